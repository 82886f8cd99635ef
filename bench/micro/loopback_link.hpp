// bench/micro/loopback_link.hpp — one connected loopback TCP pair (TCP_NODELAY on both ends):
// the raw-socket baseline that bench_net and bench_shaper measure against.
#pragma once

#include <asio.hpp>

namespace mercury::bench {

// `out` is written, `in` is read.
struct LoopbackLink {
  asio::io_context io;
  asio::ip::tcp::socket out{io}, in{io};
  LoopbackLink() {
    asio::ip::tcp::acceptor acceptor(io,
                                     asio::ip::tcp::endpoint(asio::ip::address_v4::loopback(), 0));
    out.connect(acceptor.local_endpoint());
    acceptor.accept(in);
    out.set_option(asio::ip::tcp::no_delay(true));
    in.set_option(asio::ip::tcp::no_delay(true));
  }
};

}  // namespace mercury::bench
