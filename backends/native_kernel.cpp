// sharedconv's own CPU kernel for the channel-shared convolution (the `native` backend).
//
//   y[b,c,n,i,j] = bias[n] + sum_{p,q} x[b,c, i*sh + p*dh - pt, j*sw + q*dw - pl] * w[n,p,q]
//
// One image (b, c) at a time: its padded rows are copied once into a per-thread scratch in
// which the columns of a stride are split into phases, so that for every filter tap (p, q) the
// inputs of consecutive outputs j are consecutive in memory, whatever the stride, padding or
// dilation. A tile of NB filters x V vectors of outputs is kept in registers while all KH*KW
// taps stream through it (NB*V fused multiply-adds per V loads and NB broadcasts), and every
// output is written to memory once. Backward: dw from the same scratch (a tile of 2 or 4
// filters x up to 6 taps in registers over a whole image), dx as a correlation of the padded dy
// with the filters (stride 1: a tile of rows x vectors, each tap column's weights held in
// registers while the dy rows stream past) or a scatter (stride > 1); db as dx copies dy. Partial sums of
// dw and db are kept in float64 per image and per thread. Threads: OpenMP over (image, filter
// block) or images.
//
// Written with GCC's vector extensions, so one source compiles to AVX-512 (512-bit vectors,
// 32 registers, wider tiles), to AVX2+FMA, to SSE2 or to NEON; the Python side loads the best
// build this CPU can run.
// Plain C ABI (loaded with ctypes): no Python headers.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>
#include <algorithm>
#ifdef _OPENMP
#include <omp.h>
#endif

#define SC_INLINE inline __attribute__((always_inline))

namespace {

// One vector register's bytes: 64 in the AVX-512 build (twice the lanes per instruction, and
// 32 registers instead of 16), 32 elsewhere (AVX2; SSE2 and NEON split each into two).
#if defined(__AVX512F__)
#define SC_VEC_BYTES 64
#else
#define SC_VEC_BYTES 32
#endif

template <class T> struct Vec {
  typedef T type __attribute__((vector_size(SC_VEC_BYTES)));
  static constexpr int L = SC_VEC_BYTES / sizeof(T);
};

// Keeps a loaded vector in a register: without it GCC folds the load into every multiply-add
// that uses the vector (a memory operand each), so a vector used by k multiply-adds is loaded
// k times and the loop is bound by loads, not by arithmetic.
#if defined(__AVX512F__)
#define SC_IN_REGISTER(v) asm("" : "+v"(v))  // "x" would allow only the first 16 registers
#elif defined(__AVX__)
#define SC_IN_REGISTER(v) asm("" : "+x"(v))
#elif defined(__aarch64__)
#define SC_IN_REGISTER(v) asm("" : "+w"(v))
#else
#define SC_IN_REGISTER(v) ((void)0)
#endif

template <class T> SC_INLINE typename Vec<T>::type loadu(const T* p) {
  typename Vec<T>::type v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
template <class T> SC_INLINE void storeu(T* p, typename Vec<T>::type v) {
  std::memcpy(p, &v, sizeof(v));
}
// Partial vectors by element: taking a vector's address (a memcpy through a temporary) makes
// the compiler keep a tile's accumulators in memory, a store and a load per multiply-add.
template <class T> SC_INLINE void store_n(T* p, typename Vec<T>::type v, int n) {
  for (int k = 0; k < n; ++k) p[k] = v[k];
}
template <class T> SC_INLINE typename Vec<T>::type load_n(const T* p, int n) {
  typename Vec<T>::type v = {};
  for (int k = 0; k < n; ++k) v[k] = p[k];
  return v;
}
// s - 0 is s for every s (-0 included), so this folds to one broadcast instruction (s + 0
// would not: -0 + 0 is +0, and the compiler keeps that addition)
template <class T> SC_INLINE typename Vec<T>::type bcast(T s) {
  return s - typename Vec<T>::type{};
}
template <class T> SC_INLINE double hsum(typename Vec<T>::type v) {
  double s = 0;
  for (int k = 0; k < Vec<T>::L; ++k) s += v[k];
  return s;
}

struct Geometry {
  int B, C, H, W, N, KH, KW, sh, sw, dh, dw, pt, pl, Ho, Wo;
  // the scratch of one image: rows R, each `sw` phases of M columns
  int R, M, row_len;
  std::vector<int> phase_off;  // per tap column q: phase*M + offset

  Geometry(const int32_t* g) {
    B = g[0]; C = g[1]; H = g[2]; W = g[3]; N = g[4]; KH = g[5]; KW = g[6];
    sh = g[7]; sw = g[8]; dh = g[9]; dw = g[10]; pt = g[11]; pl = g[12]; Ho = g[13]; Wo = g[14];
    R = (Ho - 1) * sh + (KH - 1) * dh + 1;
    const int max_off = ((KW - 1) * dw) / sw;
    M = Wo + max_off + 3 * (SC_VEC_BYTES / 4);  // a tile's overrun past the last output
    row_len = sw * M;
    phase_off.resize(KW);
    for (int q = 0; q < KW; ++q) phase_off[q] = ((q * dw) % sw) * M + (q * dw) / sw;
  }
  size_t scratch_elems() const { return (size_t)R * row_len; }
};

// The padded, phase-split copy of image `x` (H x W) into `s` (R x row_len).
template <class T> void fill_scratch(const Geometry& g, const T* x, T* s) {
  for (int r = 0; r < g.R; ++r) {
    T* row = s + (size_t)r * g.row_len;
    const int xr = r - g.pt;
    if (xr < 0 || xr >= g.H) {
      std::memset(row, 0, sizeof(T) * g.row_len);
      continue;
    }
    const T* xrow = x + (size_t)xr * g.W;
    for (int ph = 0; ph < g.sw; ++ph) {
      T* dst = row + (size_t)ph * g.M;
      if (g.sw == 1) {
        // columns m: x column m - pl
        const int lo = std::min(std::max(g.pl, 0), g.M);
        const int hi = std::min(g.pl + g.W, g.M);
        if (lo > 0) std::memset(dst, 0, sizeof(T) * lo);
        if (hi > lo) std::memcpy(dst + lo, xrow + (lo - g.pl), sizeof(T) * (hi - lo));
        if (g.M > std::max(hi, lo)) std::memset(dst + std::max(hi, lo), 0, sizeof(T) * (g.M - std::max(hi, lo)));
      } else {
        for (int m = 0; m < g.M; ++m) {
          const int xc = m * g.sw + ph - g.pl;
          dst[m] = (xc >= 0 && xc < g.W) ? xrow[xc] : T(0);
        }
      }
    }
  }
}

// ---- forward ----------------------------------------------------------------------------

// One tile: filters n0..n0+NB-1, output row i, columns j0 .. j0 + V*L - 1 (the last vector
// holding `last` valid lanes, < L only in rows narrower than a vector). `wt` holds the filters
// tap-major: wt[(p*KW+q)*N + n].
template <class T, int NB, int V>
SC_INLINE void fwd_tile(const Geometry& g, const T* s, const T* wt, const T* bias, T* y_img,
                        int n0, int i, int j0, int last) {
  typedef typename Vec<T>::type vec;
  constexpr int L = Vec<T>::L;
  vec acc[NB][V];
  for (int nb = 0; nb < NB; ++nb) {
    const vec b0 = bcast<T>(bias ? bias[n0 + nb] : T(0));
    for (int v = 0; v < V; ++v) acc[nb][v] = b0;
  }
  for (int p = 0; p < g.KH; ++p) {
    const T* row = s + (size_t)(i * g.sh + p * g.dh) * g.row_len + j0;
    const T* wp = wt + (size_t)p * g.KW * g.N + n0;
    for (int q = 0; q < g.KW; ++q) {
      const T* xp = row + g.phase_off[q];
      vec xv[V];
      for (int v = 0; v < V; ++v) xv[v] = loadu(xp + v * L);
      const T* wq = wp + (size_t)q * g.N;
      for (int nb = 0; nb < NB; ++nb) {
        const vec wv = bcast<T>(wq[nb]);
        for (int v = 0; v < V; ++v) acc[nb][v] += xv[v] * wv;
      }
    }
  }
  const size_t plane = (size_t)g.Ho * g.Wo;
  for (int nb = 0; nb < NB; ++nb) {
    T* yp = y_img + (size_t)(n0 + nb) * plane + (size_t)i * g.Wo + j0;
    for (int v = 0; v < V - 1; ++v) storeu(yp + v * L, acc[nb][v]);
    if (last == L)
      storeu(yp + (V - 1) * L, acc[nb][V - 1]);
    else
      store_n(yp + (V - 1) * L, acc[nb][V - 1], last);
  }
}

// A row's outputs: tiles of 3 full vectors, then one tile of 1, 2 or 3 vectors that ends at the
// row's end, moved back over outputs already computed (each output is written, not
// accumulated, so recomputing it is harmless) so that no tile is partial. A partial vector
// only in rows narrower than 3 vectors (one tile for the whole row).
template <class T, int NB>
void fwd_block(const Geometry& g, const T* s, const T* wt, const T* bias, T* y_img, int n0) {
  constexpr int L = Vec<T>::L;
  const int full = g.Wo / (3 * L) * (3 * L);
  const int rest = g.Wo - full;
  for (int i = 0; i < g.Ho; ++i) {
    if (g.Wo < 3 * L) {  // the whole row in one tile, its last vector partial
      if (g.Wo <= L)
        fwd_tile<T, NB, 1>(g, s, wt, bias, y_img, n0, i, 0, g.Wo);
      else if (g.Wo <= 2 * L)
        fwd_tile<T, NB, 2>(g, s, wt, bias, y_img, n0, i, 0, g.Wo - L);
      else
        fwd_tile<T, NB, 3>(g, s, wt, bias, y_img, n0, i, 0, g.Wo - 2 * L);
      continue;
    }
    for (int j0 = 0; j0 < full; j0 += 3 * L) fwd_tile<T, NB, 3>(g, s, wt, bias, y_img, n0, i, j0, L);
    if (rest == 0)
      continue;
    else if (rest <= L)
      fwd_tile<T, NB, 1>(g, s, wt, bias, y_img, n0, i, g.Wo - L, L);
    else if (rest <= 2 * L)
      fwd_tile<T, NB, 2>(g, s, wt, bias, y_img, n0, i, g.Wo - 2 * L, L);
    else
      fwd_tile<T, NB, 3>(g, s, wt, bias, y_img, n0, i, g.Wo - 3 * L, L);
  }
}

// Filters per tile: 4 x 3 vectors of accumulators with 16 vector registers, 8 x 3 with 32
// (AVX-512): a loaded vector of inputs then feeds 8 multiply-adds, not 4. (-DSC_FWD_NB=...,
// like -DSC_DX_R... below, tries another tile: scripts/native_parts.cpp times the parts.)
#ifndef SC_FWD_NB
#if defined(__AVX512F__)
#define SC_FWD_NB 8
#else
#define SC_FWD_NB 4
#endif
#endif
constexpr int FWD_NB = SC_FWD_NB;

// fwd_block for the last block's NB = left (< FWD_NB filters) as a constant
template <class T, int NB>
SC_INLINE void fwd_block_of(int left, const Geometry& g, const T* s, const T* wt, const T* bias,
                            T* y_img, int n0) {
  if constexpr (NB > 1) {
    if (left < NB) return fwd_block_of<T, NB - 1>(left, g, s, wt, bias, y_img, n0);
  }
  fwd_block<T, NB>(g, s, wt, bias, y_img, n0);
}

template <class T>
void forward(const int32_t* geom, const T* x, const T* w, const T* bias, T* y, int threads) {
  const Geometry g(geom);
  const int taps = g.KH * g.KW;
  std::vector<T> wt((size_t)taps * g.N);
  for (int n = 0; n < g.N; ++n)
    for (int t = 0; t < taps; ++t) wt[(size_t)t * g.N + n] = w[(size_t)n * taps + t];
  const long images = (long)g.B * g.C;
  const int blocks = (g.N + FWD_NB - 1) / FWD_NB;
  const long items = images * blocks;
  const size_t plane = (size_t)g.Ho * g.Wo;
#pragma omp parallel num_threads(threads) if (threads > 1 && items > 1)
  {
    std::vector<T> scratch(g.scratch_elems());
    long current = -1;
#pragma omp for schedule(static)
    for (long item = 0; item < items; ++item) {
      const long img = item / blocks;
      const int n0 = (int)(item % blocks) * FWD_NB;
      if (img != current) {
        fill_scratch(g, x + (size_t)img * g.H * g.W, scratch.data());
        current = img;
      }
      T* y_img = y + (size_t)img * g.N * plane;
      fwd_block_of<T, FWD_NB>(g.N - n0, g, scratch.data(), wt.data(), bias, y_img, n0);
    }
  }
}

// ---- backward ---------------------------------------------------------------------------

// The lanes of a vector at or past `keep` lanes from its end, as a bit mask: the last
// vector of a row is loaded ending at the row's end, and the lanes it shares with the
// vector before are masked off (a reduction must not count them twice).
template <class T> SC_INLINE typename Vec<T>::type tail_mask(int fresh) {
  typedef typename Vec<T>::type vec;
  vec m = {};
  for (int k = 0; k < Vec<T>::L; ++k) m[k] = k >= Vec<T>::L - fresh ? T(1) : T(0);
  return m;
}

// The rows' last, partial vectors of a dw tile (below): a function of its own, with its own
// accumulators. Inside the tile's loop (or after it, on the same accumulators) their code pushed
// the accumulators of 4 filters out of the registers, at half the speed.
template <class T, int NB, int QB>
__attribute__((noinline)) void dw_tail(const Geometry& g, const T* s, const T* dy_img,
                                       double* dwacc, int n0, int p, int q0) {
  typedef typename Vec<T>::type vec;
  constexpr int L = Vec<T>::L;
  const size_t plane = (size_t)g.Ho * g.Wo;
  const int fresh = g.Wo % L;  // lanes of the last, partial vector
  // rows at least one vector wide: the last vector ends at the row's end, its lanes already
  // counted multiplied by zero (a multiply by the 0/1 mask, not a branch)
  const bool shifted = g.Wo >= L;
  const int j = shifted ? g.Wo - L : 0;
  const vec mask = tail_mask<T>(fresh);
  vec acc[NB][QB];
  for (int nb = 0; nb < NB; ++nb)
    for (int k = 0; k < QB; ++k) acc[nb][k] = vec{};
  for (int i = 0; i < g.Ho; ++i) {
    const T* row = s + (size_t)(i * g.sh + p * g.dh) * g.row_len;
    const T* dyr = dy_img + (size_t)n0 * plane + (size_t)i * g.Wo;
    vec d[NB];
    for (int nb = 0; nb < NB; ++nb)
      d[nb] = shifted ? loadu(dyr + nb * plane + j) * mask : load_n(dyr + nb * plane, fresh);
    for (int k = 0; k < QB; ++k) {
      const vec xv = loadu(row + g.phase_off[q0 + k] + j);
      for (int nb = 0; nb < NB; ++nb) acc[nb][k] += d[nb] * xv;
    }
  }
  for (int nb = 0; nb < NB; ++nb)
    for (int k = 0; k < QB; ++k)
      dwacc[((size_t)(n0 + nb) * g.KH + p) * g.KW + q0 + k] += hsum<T>(acc[nb][k]);
}

// dw[n0..n0+NB-1][p][q0..q0+QB-1] += sum over the image of dy * shifted x (from the scratch).
// NB*QB accumulators; per vector of outputs NB loads of dy and QB of x.
template <class T, int NB, int QB>
SC_INLINE void dw_tile(const Geometry& g, const T* s, const T* dy_img, double* dwacc, int n0,
                       int p, int q0) {
  typedef typename Vec<T>::type vec;
  constexpr int L = Vec<T>::L;
  vec acc[NB][QB];
  for (int nb = 0; nb < NB; ++nb)
    for (int k = 0; k < QB; ++k) acc[nb][k] = vec{};
  const size_t plane = (size_t)g.Ho * g.Wo;
  int offs[QB];
  for (int k = 0; k < QB; ++k) offs[k] = g.phase_off[q0 + k];
  const int full = g.Wo / L * L;
  for (int i = 0; i < g.Ho; ++i) {
    const T* row = s + (size_t)(i * g.sh + p * g.dh) * g.row_len;
    const T* dyr = dy_img + (size_t)n0 * plane + (size_t)i * g.Wo;
    for (int j = 0; j < full; j += L) {
      vec d[NB];
      for (int nb = 0; nb < NB; ++nb) d[nb] = loadu(dyr + nb * plane + j);
      for (int nb = 0; nb < NB; ++nb) SC_IN_REGISTER(d[nb]);
      for (int k = 0; k < QB; ++k) {
        vec xv = loadu(row + offs[k] + j);
        SC_IN_REGISTER(xv);
        for (int nb = 0; nb < NB; ++nb) acc[nb][k] += d[nb] * xv;
      }
    }
  }
  for (int nb = 0; nb < NB; ++nb)
    for (int k = 0; k < QB; ++k)
      dwacc[((size_t)(n0 + nb) * g.KH + p) * g.KW + q0 + k] += hsum<T>(acc[nb][k]);
  if (full < g.Wo) dw_tail<T, NB, QB>(g, s, dy_img, dwacc, n0, p, q0);
}

// All taps of NB filters: per tap row p, the tap columns in as few chunks of at most 6 as
// possible, of balanced sizes (NB = 2: 2*6 accumulators, 2 vectors of dy and one of x in the
// 16 vector registers).
template <class T, int NB>
void dw_filters(const Geometry& g, const T* s, const T* dy_img, double* dwacc, int n0) {
  const int chunks = (g.KW + 5) / 6;
  for (int p = 0; p < g.KH; ++p) {
    for (int c = 0, q0 = 0; c < chunks; ++c) {
      const int size = (g.KW - q0 + (chunks - c) - 1) / (chunks - c);
      switch (size) {
        case 6: dw_tile<T, NB, 6>(g, s, dy_img, dwacc, n0, p, q0); break;
        case 5: dw_tile<T, NB, 5>(g, s, dy_img, dwacc, n0, p, q0); break;
        case 4: dw_tile<T, NB, 4>(g, s, dy_img, dwacc, n0, p, q0); break;
        case 3: dw_tile<T, NB, 3>(g, s, dy_img, dwacc, n0, p, q0); break;
        case 2: dw_tile<T, NB, 2>(g, s, dy_img, dwacc, n0, p, q0); break;
        default: dw_tile<T, NB, 1>(g, s, dy_img, dwacc, n0, p, q0); break;
      }
      q0 += size;
    }
  }
}

// dw's filters per tile: with AVX-512's 32 registers 4 (4 x 5 accumulators for K = 5: a loaded
// vector of x feeds 4 multiply-adds, not 2; 16-24% faster than 2 on one thread in
// scripts/native_parts.py's problems once the partial vectors left the tile's loop, see
// dw_tail; 5 was no faster), with 16 registers 2 (3 or 4 leave the registers).
#if defined(__AVX512F__)
constexpr int DW_NB = 4;
#else
constexpr int DW_NB = 2;
#endif

// dw of one image, all filters: blocks of DW_NB filters, the last block smaller
template <class T, int NB = DW_NB>
void dw_image(const Geometry& g, const T* s, const T* dy_img, double* dwacc, int n0 = 0) {
  for (; n0 + NB <= g.N; n0 += NB) dw_filters<T, NB>(g, s, dy_img, dwacc, n0);
  if constexpr (NB > 1) {
    if (n0 < g.N) dw_image<T, NB - 1>(g, s, dy_img, dwacc, n0);
  }
}

template <class T> double plane_sum(const T* a, size_t n) {
  typedef typename Vec<T>::type vec;
  constexpr int L = Vec<T>::L;
  vec acc0 = {}, acc1 = {};
  size_t k = 0;
  for (; k + 2 * L <= n; k += 2 * L) {
    acc0 += loadu(a + k);
    acc1 += loadu(a + k + L);
  }
  double s = hsum<T>(acc0) + hsum<T>(acc1);
  for (; k < n; ++k) s += a[k];
  return s;
}

// dx of one image, stride 1: dx[h][c] = sum_n sum_{p,q} dyp[n][h + pt - p*dh + TR][c + pl - q*dw + TC] w[n][p][q]
// with dyp[n] the zero-padded dy plane of filter n (TR = (KH-1)*dh rows, TC = (KW-1)*dw
// columns of margin; planes `PS` elements apart). A tile is R rows x V vectors of dx, summed
// over filters n0..n1-1 in registers, then added to what earlier filters left in `acc_img`. With row dilation 1, row h+r's tap p reads
// the dy row that row h's tap p-r reads: each loaded vector of dy feeds up to R rows (u = r - p
// runs over the dy rows).
template <class T, int R, int V, int KHT>
SC_INLINE void dx_tile(const Geometry& g, const T* dyp, size_t PS, int MM, const T* w, T* acc_img,
                       int DW, int h, int c0, int n0, int n1) {
  typedef typename Vec<T>::type vec;
  constexpr int L = Vec<T>::L;
  const int KH = KHT > 0 ? KHT : g.KH;
  const int TR = (KH - 1) * g.dh, TC = (g.KW - 1) * g.dw;
  vec acc[R][V];
  for (int r = 0; r < R; ++r) {
    const T* out = acc_img + (size_t)(h + r) * DW + c0;
    for (int v = 0; v < V; ++v) acc[r][v] = n0 == 0 ? vec{} : loadu(out + v * L);
  }
  const size_t offset = (size_t)(h + g.pt + TR) * MM + c0 + g.pl + TC;
  const int taps = KH * g.KW;
  for (int n = n0; n < n1; ++n) {
    const T* base = dyp + (n - n0) * PS + offset;
    const T* wn = w + (size_t)n * taps;
    if constexpr (KHT > 0) {
      // Tap column q outermost: its KH weights stay in registers while the tile's dy rows
      // stream past them, so a loaded vector feeds up to KH rows and no weight is broadcast
      // twice (with the rows outermost every multiply-add broadcast its weight again).
      for (int q = 0; q < g.KW; ++q) {
        vec wv[KHT];
        for (int p = 0; p < KHT; ++p) wv[p] = bcast<T>(wn[p * g.KW + q]);
        for (int p = 0; p < KHT; ++p) SC_IN_REGISTER(wv[p]);
        const T* col = base - q * g.dw;
#pragma GCC unroll 32
        for (int u = 1 - KHT; u < R; ++u) {
          const T* row = col + (std::ptrdiff_t)u * g.dh * MM;
#pragma GCC unroll 4
          for (int v = 0; v < V; ++v) {
            vec xv = loadu(row + v * L);
            SC_IN_REGISTER(xv);
#pragma GCC unroll 16
            for (int p = 0; p < KHT; ++p)  // tap row p of dy row u is dx row u + p of the tile
              if (u + p >= 0 && u + p < R) acc[u + p][v] += xv * wv[p];
          }
        }
      }
      continue;
    }
#pragma GCC unroll 16
    for (int u = 1 - KH; u < R; ++u) {
      const T* row = base + (std::ptrdiff_t)u * g.dh * MM;
      for (int q = 0; q < g.KW; ++q) {
        vec xv[V];
        const T* src = row - q * g.dw;
        for (int v = 0; v < V; ++v) xv[v] = loadu(src + v * L);
        for (int v = 0; v < V; ++v) SC_IN_REGISTER(xv[v]);
        for (int r = 0; r < R; ++r) {
          const int p = r - u;
          if (p < 0 || p >= KH) continue;
          const vec wv = bcast<T>(wn[p * g.KW + q]);
          for (int v = 0; v < V; ++v) acc[r][v] += xv[v] * wv;
        }
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    T* out = acc_img + (size_t)(h + r) * DW + c0;
    for (int v = 0; v < V; ++v) storeu(out + v * L, acc[r][v]);
  }
}

// One band of R dx rows across the columns [0, DW) (DW whole vectors): tiles of V vectors,
// then one tile of the vectors left (a tile of V vectors over the last 8 of 200 columns
// computed 24 of its 32 lanes for nothing).
template <class T, int R, int V, int KHT>
SC_INLINE void dx_cols(const Geometry& g, const T* dyp, size_t PS, int MM, const T* w, T* acc,
                       int DW, int h, int c0, int n0, int n1, int vectors) {
  if constexpr (V > 0) {
    if (vectors == V) return dx_tile<T, R, V, KHT>(g, dyp, PS, MM, w, acc, DW, h, c0, n0, n1);
    dx_cols<T, R, V - 1, KHT>(g, dyp, PS, MM, w, acc, DW, h, c0, n0, n1, vectors);
  }
}

template <class T, int R, int V, int KHT>
void dx_band(const Geometry& g, const T* dyp, size_t PS, int MM, const T* w, T* acc, int DW,
             int h, int n0, int n1) {
  constexpr int L = Vec<T>::L;
  int c0 = 0;
  for (; c0 + V * L <= DW; c0 += V * L)
    dx_tile<T, R, V, KHT>(g, dyp, PS, MM, w, acc, DW, h, c0, n0, n1);
  if (c0 < DW) dx_cols<T, R, V - 1, KHT>(g, dyp, PS, MM, w, acc, DW, h, c0, n0, n1, (DW - c0) / L);
}

// The rows below the last whole band: one band of the rows left (rows one at a time fed each
// loaded vector of dy to one row).
template <class T, int R, int V, int KHT>
void dx_rows(const Geometry& g, const T* dyp, size_t PS, int MM, const T* w, T* acc, int DW,
             int h, int n0, int n1, int rows) {
  if constexpr (R > 0) {
    if (rows == R) return dx_band<T, R, V, KHT>(g, dyp, PS, MM, w, acc, DW, h, n0, n1);
    dx_rows<T, R - 1, V, KHT>(g, dyp, PS, MM, w, acc, DW, h, n0, n1, rows);
  }
}

// dx rows are written to `acc` (rows of DW >= W, whole tiles; the lanes past W are computed
// from zeros and never copied out). Every filter's dy plane is copied once into its padded
// plane of `pad` (the margins stay zero: the planes' places do not change from image to image,
// so the buffer is zeroed only when it is made). Tiles of R rows x V vectors (SC_DX_R...
// below). With row dilation > 1, rows one at a time.
// Filters summed in registers per pass over the image: their dy rows under a band of tiles stay
// in the L1 cache (all 20 filters of a 200-wide image at once did not: slower than one at a time).
constexpr int DX_FILTERS = 4;

template <class T, int R, int V, int KHT>
void dx_image(const Geometry& g, const T* dy_img, const T* w, T* dx_img, std::vector<T>& pad,
              std::vector<T>& acc, double* dbacc) {
  constexpr int L = Vec<T>::L;
  const int TR = (g.KH - 1) * g.dh, TC = (g.KW - 1) * g.dw;
  const int DW = (g.W + L - 1) / L * L;
  const int RR = g.H + g.pt + TR + 1;
  const int MM = DW + g.pl + TC + L;
  const size_t PS = (size_t)RR * MM;
  const int planes = std::min(g.N, DX_FILTERS);
  if (pad.size() != PS * planes) pad.assign(PS * planes, T(0));
  acc.resize((size_t)g.H * DW);
  const size_t plane = (size_t)g.Ho * g.Wo;
  const int cols = std::min(g.Wo, MM - TC);
  const int rows = g.dh == 1 ? g.H / R * R : 0;
  for (int n0 = 0; n0 < g.N; n0 += DX_FILTERS) {
    const int n1 = std::min(g.N, n0 + DX_FILTERS);
    // this pass's dy planes copied just before its tiles read them: they are still in the L2
    // cache (all N planes copied first had left it for the larger caches on the seed's image)
    for (int n = n0; n < n1; ++n) {
      const T* d = dy_img + (size_t)n * plane;
      T* dst = pad.data() + (n - n0) * PS + TC;
      for (int i = 0; i < g.Ho && i + TR < RR; ++i)
        std::memcpy(dst + (size_t)(i + TR) * MM, d + (size_t)i * g.Wo, sizeof(T) * cols);
      // db while the plane is in cache: a separate pass read every dy again from memory
      if (dbacc) dbacc[n] += plane_sum(d, plane);
    }
    for (int h = 0; h < rows; h += R)
      dx_band<T, R, V, KHT>(g, pad.data(), PS, MM, w, acc.data(), DW, h, n0, n1);
    if (g.dh == 1 && rows < g.H)
      dx_rows<T, R - 1, V, KHT>(g, pad.data(), PS, MM, w, acc.data(), DW, rows, n0, n1, g.H - rows);
    for (int h = g.dh == 1 ? g.H : 0; h < g.H; ++h)
      dx_band<T, 1, V, KHT>(g, pad.data(), PS, MM, w, acc.data(), DW, h, n0, n1);
  }
  for (int h = 0; h < g.H; ++h)
    std::memcpy(dx_img + (size_t)h * g.W, acc.data() + (size_t)h * DW, sizeof(T) * g.W);
}

// The filter height as a constant where it is a common one: the rows a dy row feeds are then
// known when compiling, and the tile's accumulators stay in registers without tests.
template <class T, int R, int V>
void dx_tiles(const Geometry& g, const T* dy_img, const T* w, T* dx_img, std::vector<T>& pad,
              std::vector<T>& acc, double* dbacc) {
  switch (g.KH) {
    case 3: dx_image<T, R, V, 3>(g, dy_img, w, dx_img, pad, acc, dbacc); break;
    case 5: dx_image<T, R, V, 5>(g, dy_img, w, dx_img, pad, acc, dbacc); break;
    case 7: dx_image<T, R, V, 7>(g, dy_img, w, dx_img, pad, acc, dbacc); break;
    default: dx_image<T, R, V, 0>(g, dy_img, w, dx_img, pad, acc, dbacc); break;
  }
}

// The dx tile (rows x vectors; -DSC_DX_R=.. -DSC_DX_V=.. tries another): with 32 registers
// (AVX-512) 8 x 2, in which a loaded vector of dy feeds up to KH rows; with 16, 4 x 2. The rows
// a dy row feeds are tested when compiling (see dx_tiles); bands and tiles at the edges take
// the rows and vectors left (dx_rows, dx_cols).
#ifndef SC_DX_R
#if defined(__AVX512F__)
#define SC_DX_R 8
#define SC_DX_V 2
#else
#define SC_DX_R 4
#define SC_DX_V 2
#endif
#endif

template <class T>
void dx_stride1(const Geometry& g, const T* dy_img, const T* w, T* dx_img, std::vector<T>& pad,
                std::vector<T>& acc, double* dbacc) {
  dx_tiles<T, SC_DX_R, SC_DX_V>(g, dy_img, w, dx_img, pad, acc, dbacc);
}

// dx of one image, any stride: scatter dy * w into a padded buffer, then crop.
template <class T>
void dx_scatter(const Geometry& g, const T* dy_img, const T* w, T* dx_img, std::vector<T>& pad) {
  const int HP = (g.Ho - 1) * g.sh + (g.KH - 1) * g.dh + 1;
  const int WP = (g.Wo - 1) * g.sw + (g.KW - 1) * g.dw + 1;
  pad.assign((size_t)HP * WP, T(0));
  const size_t plane = (size_t)g.Ho * g.Wo;
  for (int n = 0; n < g.N; ++n) {
    const T* d = dy_img + (size_t)n * plane;
    const T* wn = w + (size_t)n * g.KH * g.KW;
    for (int i = 0; i < g.Ho; ++i)
      for (int p = 0; p < g.KH; ++p) {
        T* prow = pad.data() + (size_t)(i * g.sh + p * g.dh) * WP;
        for (int q = 0; q < g.KW; ++q) {
          const T wv = wn[p * g.KW + q];
          T* dst = prow + q * g.dw;
          const T* src = d + (size_t)i * g.Wo;
          for (int j = 0; j < g.Wo; ++j) dst[j * g.sw] += src[j] * wv;
        }
      }
  }
  for (int h = 0; h < g.H; ++h) {
    const int r = h + g.pt;
    for (int c = 0; c < g.W; ++c) {
      const int col = c + g.pl;
      dx_img[(size_t)h * g.W + c] = (r < HP && col < WP) ? pad[(size_t)r * WP + col] : T(0);
    }
  }
}

template <class T>
void backward(const int32_t* geom, const T* x, const T* w, const T* dy, T* dx, T* dw, T* db,
              int threads) {
  const Geometry g(geom);
  const long images = (long)g.B * g.C;
  const size_t plane = (size_t)g.Ho * g.Wo;
  const size_t wsize = (size_t)g.N * g.KH * g.KW;
  int team = threads;
#ifdef _OPENMP
  if (team < 1) team = 1;
#else
  team = 1;
#endif
  std::vector<double> dw_part((size_t)team * wsize, 0.0), db_part((size_t)team * g.N, 0.0);
#pragma omp parallel num_threads(team) if (team > 1 && images > 1)
  {
    int tid = 0;
#ifdef _OPENMP
    tid = omp_get_thread_num();
#endif
    double* dwacc = dw_part.data() + (size_t)tid * wsize;
    double* dbacc = db_part.data() + (size_t)tid * g.N;
    std::vector<T> scratch(g.scratch_elems()), pad, dx_acc;
#pragma omp for schedule(static)
    for (long img = 0; img < images; ++img) {
      const T* dy_img = dy + (size_t)img * g.N * plane;
      fill_scratch(g, x + (size_t)img * g.H * g.W, scratch.data());
      dw_image(g, scratch.data(), dy_img, dwacc);
      T* dx_img = dx + (size_t)img * g.H * g.W;
      if (g.sh == 1 && g.sw == 1) {
        dx_stride1(g, dy_img, w, dx_img, pad, dx_acc, db ? dbacc : nullptr);
      } else {
        if (db)
          for (int n = 0; n < g.N; ++n) dbacc[n] += plane_sum(dy_img + (size_t)n * plane, plane);
        dx_scatter(g, dy_img, w, dx_img, pad);
      }
    }
  }
  for (size_t k = 0; k < wsize; ++k) {
    double s = 0;
    for (int t = 0; t < team; ++t) s += dw_part[(size_t)t * wsize + k];
    dw[k] = (T)s;
  }
  if (db)
    for (int n = 0; n < g.N; ++n) {
      double s = 0;
      for (int t = 0; t < team; ++t) s += db_part[(size_t)t * g.N + n];
      db[n] = (T)s;
    }
}

}  // namespace

extern "C" {

// Bumped whenever a signature below changes; the Python side refuses a library that differs.
int sc_abi_version(void) { return 1; }

// What this build was compiled for, e.g. "x86-64-v3 (AVX2, FMA)", for the run's record.
const char* sc_build(void) {
#if defined(__AVX512F__)
  return "AVX-512";
#elif defined(__AVX2__) && defined(__FMA__)
  return "AVX2+FMA";
#elif defined(__ARM_NEON)
  return "NEON";
#elif defined(__SSE2__)
  return "SSE2";
#else
  return "generic";
#endif
}

#ifndef SC_SOURCE_SHA
#define SC_SOURCE_SHA "unknown"
#endif
// The first 16 hex digits of the SHA-256 of this file as it was built (set by setup.py).
const char* sc_source_sha(void) { return SC_SOURCE_SHA; }

int sc_openmp(void) {
#ifdef _OPENMP
  return 1;
#else
  return 0;
#endif
}

// geom: B, C, H, W, N, KH, KW, sh, sw, dh, dw, pt, pl, Ho, Wo (the caller checks them)
void sc_forward_f32(const int32_t* geom, const float* x, const float* w, const float* b, float* y,
                    int threads) {
  forward<float>(geom, x, w, b, y, threads);
}
void sc_forward_f64(const int32_t* geom, const double* x, const double* w, const double* b,
                    double* y, int threads) {
  forward<double>(geom, x, w, b, y, threads);
}
void sc_backward_f32(const int32_t* geom, const float* x, const float* w, const float* dy,
                     float* dx, float* dw, float* db, int threads) {
  backward<float>(geom, x, w, dy, dx, dw, db, threads);
}
void sc_backward_f64(const int32_t* geom, const double* x, const double* w, const double* dy,
                     double* dx, double* dw, double* db, int threads) {
  backward<double>(geom, x, w, dy, dx, dw, db, threads);
}
}
