// test_ot — base OT (Naor–Pinkas) and IKNP correlated OT: the receiver gets exactly the chosen messages,
// which differ from the others; the state carries over between extensions; the bit transpose is right.
#include <vector>

#include "capc_gc/base_ot.h"
#include "capc_gc/iknp.h"
#include "test_util.h"

using namespace capc_gc;

static void test_transpose() {
  const size_t n = 384;
  std::vector<uint8_t> in(128 * n / 8);
  PRG prg(make_block(1, 2));
  prg.random_bytes(in.data(), in.size());
  std::vector<block> out(n), out2(n);
  transpose_128xn(in.data(), out.data(), n);
  detail::transpose_128xn_sse2(in.data(), out2.data(), n);
  for (size_t c = 0; c < n; ++c) CHECK(block_eq(out[c], out2[c]));
  int bad = 0;
  for (size_t r = 0; r < 128; ++r)
    for (size_t c = 0; c < n; ++c) {
      bool want = (in[r * (n / 8) + c / 8] >> (c % 8)) & 1;
      uint8_t row[16];
      store_block(row, out[c]);
      bool got = (row[r / 8] >> (r % 8)) & 1;
      bad += want != got;
    }
  CHECK_EQ(bad, 0);
}

static void test_base_ot() {
  const size_t n = 64;
  const block sid = make_block(7, 9);
  std::vector<block> pairs(2 * n), got(n);
  bool choices[n];
  PRG cprg;
  for (size_t i = 0; i < n; ++i) choices[i] = (cprg.random_block()[0] & 1) != 0;
  test::run_pair([&](IOChannel& io) { PRG p; base_ot_send(io, p, sid, n, pairs.data()); },
                 [&](IOChannel& io) { PRG p; base_ot_recv(io, p, sid, choices, n, got.data()); });
  int ok = 0, distinct = 0;
  for (size_t i = 0; i < n; ++i) {
    ok += block_eq(got[i], pairs[2 * i + (choices[i] ? 1 : 0)]);
    distinct += !block_eq(pairs[2 * i], pairs[2 * i + 1]) && !block_eq(got[i], pairs[2 * i + (choices[i] ? 0 : 1)]);
  }
  CHECK_EQ(ok, static_cast<int>(n));
  CHECK_EQ(distinct, static_cast<int>(n));
  // The wire must not carry the messages: a different session id gives unrelated keys.
  std::vector<block> pairs2(2 * n), got2(n);
  test::run_pair([&](IOChannel& io) { PRG p; base_ot_send(io, p, make_block(1, 1), n, pairs2.data()); },
                 [&](IOChannel& io) { PRG p; base_ot_recv(io, p, make_block(1, 1), choices, n, got2.data()); });
  CHECK(!block_eq(pairs2[0], pairs[0]));
}

static void test_iknp() {
  const block sid = make_block(3, 4);
  IknpCotSender snd;
  IknpCotReceiver rcv;
  PRG cprg;
  // One Delta for the whole session (the sender's base-OT choice bits), lsb 1.
  const block delta = _mm_or_si128(cprg.random_block(), make_block(0, 1));
  test::check_throws<GcError>([&] {
    test::run_pair([&](IOChannel& io) {
      PRG p;
      IknpCotSender s;
      s.setup(io, p, sid, xor_block(delta, make_block(0, 1)));  // refused before any byte is sent
    }, [](IOChannel&) {});
  }, "IKNP setup with an even Delta");
  // Several extensions over one pair of objects (base OTs once), sizes not multiples of 128.
  for (size_t n : {1, 100, 128, 1000, 5000}) {
    std::vector<block> zero(n), out(n);
    std::vector<uint8_t> ch(n);
    for (size_t j = 0; j < n; ++j) ch[j] = cprg.random_block()[0] & 1;
    uint64_t receiver_got = 0, sender_got = 0;
    test::run_pair(
        [&](IOChannel& io) {
          PRG p;
          if (!snd.ready()) snd.setup(io, p, sid, delta);
          const uint64_t before = io.bytes_received();
          snd.send_cot(io, n, zero.data());
          sender_got = io.bytes_received() - before;
        },
        [&](IOChannel& io) {
          PRG p;
          if (!rcv.ready()) rcv.setup(io, p, sid);
          const uint64_t before = io.bytes_received();
          rcv.recv_cot(io, reinterpret_cast<const bool*>(ch.data()), n, out.data());
          io.flush();
          receiver_got = io.bytes_received() - before;
        });
    int ok = 0, other = 0;
    for (size_t j = 0; j < n; ++j) {
      block want = ch[j] ? xor_block(zero[j], delta) : zero[j];
      block not_chosen = ch[j] ? zero[j] : xor_block(zero[j], delta);
      ok += block_eq(out[j], want);
      other += block_eq(out[j], not_chosen);
    }
    CHECK_EQ(ok, static_cast<int>(n));
    CHECK_EQ(other, 0);
    // 16 bytes per OT (rounded up to 128 OTs) one way, nothing back: no per-OT correction.
    CHECK_EQ(sender_got, (n + 127) / 128 * 128 * 16);
    CHECK_EQ(receiver_got, 0u);
  }
}

int main() {
  test_transpose();
  test_base_ot();
  test_iknp();
  return test::finish("test_ot");
}
