"""Tests of capc.launcher: flags, run directory, control channel, subprocess and tmux modes."""
