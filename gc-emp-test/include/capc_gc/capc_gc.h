// capc_gc.h — umbrella header: the emp-sh2pc-shaped API of capc's garbled-circuit engine.
#pragma once
#include "capc_gc/backend.h"
#include "capc_gc/bit.h"
#include "capc_gc/errors.h"
#include "capc_gc/handshake.h"
#include "capc_gc/integer.h"
#include "capc_gc/net_io.h"
#include "capc_gc/semi_honest.h"
#include "capc_gc/setup.h"
