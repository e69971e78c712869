// Where the native kernel's time goes, one thread: forward, and the parts of backward (dw;
// dx with db, which is summed as dx copies dy) timed apart, against the problem's FLOPs; then forward and backward on two
// threads. Built and run by
// scripts/native_parts.py (which also measures one thread's float32 matmul for comparison).
#include "../backends/native_kernel.cpp"

#include <chrono>
#include <cstdio>
#include <cstdlib>

namespace {
using Clock = std::chrono::steady_clock;

template <class F> double best_of(F f, int repeats) {
  double best = 1e30;
  for (int k = 0; k < repeats; ++k) {
    const auto t0 = Clock::now();
    f();
    best = std::min(best, std::chrono::duration<double>(Clock::now() - t0).count());
  }
  return best;
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 7) {
    std::fprintf(stderr, "usage: %s B C H W N K [repeats]\n", argv[0]);
    return 2;
  }
  const int B = std::atoi(argv[1]), C = std::atoi(argv[2]), H = std::atoi(argv[3]),
            W = std::atoi(argv[4]), N = std::atoi(argv[5]), K = std::atoi(argv[6]);
  const int repeats = argc > 7 ? std::atoi(argv[7]) : 7;
  const int Ho = H - K + 1, Wo = W - K + 1;
  const int32_t geom[15] = {B, C, H, W, N, K, K, 1, 1, 1, 1, 0, 0, Ho, Wo};
  const size_t images = (size_t)B * C, plane = (size_t)Ho * Wo;
  std::vector<float> x(images * H * W), w((size_t)N * K * K), b(N), y(images * N * plane),
      dy(y.size()), dx(x.size()), dw(w.size()), db(N);
  for (size_t i = 0; i < x.size(); ++i) x[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f;
  for (size_t i = 0; i < dy.size(); ++i) dy[i] = (float)((i * 104729) % 1000) / 1000.0f - 0.5f;
  for (size_t i = 0; i < w.size(); ++i) w[i] = (float)(i % 13) / 13.0f - 0.5f;
  const double flops = 2.0 * images * N * plane * K * K;
  const Geometry g(geom);
  std::vector<float> scratch(g.scratch_elems()), pad, acc;
  std::vector<double> dwacc(w.size()), dbacc(N);
  const double fwd = best_of([&] { forward<float>(geom, x.data(), w.data(), b.data(), y.data(), 1); }, repeats);
  const double bwd = best_of([&] { backward<float>(geom, x.data(), w.data(), dy.data(), dx.data(), dw.data(), db.data(), 1); }, repeats);
  const double t_dw = best_of([&] {
    for (size_t img = 0; img < images; ++img) {
      fill_scratch(g, x.data() + img * H * W, scratch.data());
      dw_image(g, scratch.data(), dy.data() + img * N * plane, dwacc.data());
    }
  }, repeats);
  const double t_dx = best_of([&] {
    for (size_t img = 0; img < images; ++img) dx_stride1(g, dy.data() + img * N * plane, w.data(), dx.data() + img * H * W, pad, acc, dbacc.data());
  }, repeats);
  const int team = 2;
  const double fwd2 = best_of([&] { forward<float>(geom, x.data(), w.data(), b.data(), y.data(), team); }, repeats);
  const double bwd2 = best_of([&] { backward<float>(geom, x.data(), w.data(), dy.data(), dx.data(), dw.data(), db.data(), team); }, repeats);
  std::printf("build %s, one thread, B=%d,C=%d,H=%d,W=%d,N=%d,K=%d, best of %d\n", sc_build(), B, C, H, W, N, K, repeats);
  std::printf("part      ms   GFLOP/s\n");
  std::printf("forward  %8.3f %7.1f\n", fwd * 1e3, flops / fwd / 1e9);
  std::printf("backward %8.3f %7.1f\n", bwd * 1e3, 2 * flops / bwd / 1e9);
  std::printf("  dw     %8.3f %7.1f\n", t_dw * 1e3, flops / t_dw / 1e9);
  std::printf("  dx, db %8.3f %7.1f\n", t_dx * 1e3, flops / t_dx / 1e9);
  std::printf("%d threads: forward %.3f ms (%.1f GFLOP/s, %.2fx one thread), backward %.3f ms (%.1f GFLOP/s, %.2fx)\n",
              team, fwd2 * 1e3, flops / fwd2 / 1e9, fwd / fwd2, bwd2 * 1e3, 2 * flops / bwd2 / 1e9, bwd / bwd2);
  return 0;
}
