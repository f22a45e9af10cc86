// errors.h — the engine's exception classes; every failure is reported by one of these.
#pragma once
#include <stdexcept>
#include <string>

namespace capc_gc {

/// Base class of every error the engine raises on purpose.
class GcError : public std::runtime_error {
 public:
  explicit GcError(const std::string& what) : std::runtime_error(what) {}
};
/// The network failed: could not connect, peer closed, timeout.
class NetError : public GcError {
 public:
  using GcError::GcError;
};
/// The peer is not the expected peer, or the two sides disagree on what to run.
class ProtocolError : public GcError {
 public:
  using GcError::GcError;
};
/// A caller passed malformed input (sizes, values, files).
class InputError : public GcError {
 public:
  using GcError::GcError;
};
/// The local crypto library (OpenSSL, OS entropy) failed.
class CryptoError : public GcError {
 public:
  using GcError::GcError;
};

}  // namespace capc_gc
