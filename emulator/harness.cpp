// Batch harness for the Verilated halut_accel: a plain C loop over numpy buffers, called from
// Python through ctypes (emulator/harness.py). Built with the model by emulator/build.py:
//   verilator --cc --exe harness.cpp --build -CFLAGS -fPIC -LDFLAGS -shared -o lib...so
// With -DHX_MAIN it is instead a stand-alone program (the no-Python speed ceiling of the
// benchmark, bench/bench_emulator.py).
//
// The cycle protocol (emulator/driver.py does exactly the same one cycle at a time):
//   1. with clk_i low, drive this cycle's inputs and eval() (combinational outputs settle)
//   2. sample the handshakes: a beat is taken when in_valid_i && in_ready_o, a result when
//      out_valid_o && out_ready_i
//   3. clk_i high, eval() (the rising edge), clk_i low
// Trace time stamps: 2*cycle with the inputs of the cycle, 2*cycle+1 after the rising edge.
//
// Random bubbles / back-pressure use splitmix64 (two streams, each drawn once per streaming
// cycle when its probability is non-zero), so that Python can reproduce the same patterns: a
// cycle is a bubble when (next() >> 11) < threshold, with threshold = round(p * 2^53).
// The library is built with -fvisibility=hidden: only the hx_* functions are exported, so the
// model's internal calls bind directly (no PLT) and two models in one process never share
// symbols.

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "Vhalut_accel.h"
#include "Vhalut_accel___024root.h"
#include "verilated.h"

#define HARNESS_TOP Vhalut_accel
#define HARNESS_ROOT Vhalut_accel___024root
#define HARNESS_ROOT_EVAL Vhalut_accel___024root___eval
#include "harness_sim.h"  // Sim, the clock edge, port access, splitmix64 (shared with mac_accel)

namespace {

// float32 -> IEEE binary16, round to nearest even, subnormals kept, overflow to inf (numpy's
// astype(float16); after F. Giesen's float_to_half_fast3_rtne). Finite inputs only: the host
// rejects NaN and inf before any packing.
inline uint16_t f32_to_f16(float value) {
    const uint32_t f16_overflow = (127u + 16u) << 23;            // 2^16: inf from here up
    const uint32_t denorm_magic = ((127u - 15u) + (23u - 10u) + 1u) << 23;
    uint32_t f;
    std::memcpy(&f, &value, 4);
    const uint32_t sign = f & 0x80000000u;
    f ^= sign;
    uint16_t o;
    if (f >= f16_overflow) {
        o = 0x7C00u;
    } else if (f < (113u << 23)) {  // below 2^-14: a subnormal or zero result
        float magic, v;
        std::memcpy(&magic, &denorm_magic, 4);
        std::memcpy(&v, &f, 4);
        v += magic;  // the float add rounds to nearest even at the subnormal's last bit
        uint32_t bits;
        std::memcpy(&bits, &v, 4);
        o = static_cast<uint16_t>(bits - denorm_magic);
    } else {
        const uint32_t mant_odd = (f >> 13) & 1u;
        f += (static_cast<uint32_t>(15 - 127) << 23) + 0xFFFu + mant_odd;  // rebias, round
        o = static_cast<uint16_t>(f >> 13);
    }
    return static_cast<uint16_t>(o | (sign >> 16));
}

// float32 -> int8: saturate(round_half_even(x * scale)) in float32 (golden.to_int8)
inline uint8_t f32_to_i8(float x, float scale) {
    float r = std::nearbyint(x * scale);  // default rounding mode: to nearest even
    r = r < -128.0f ? -128.0f : (r > 127.0f ? 127.0f : r);
    return static_cast<uint8_t>(static_cast<int8_t>(r));
}

inline void idle_inputs(Sim* s) {
    s->top->cfg_valid_i = 0;
    s->top->cfg_addr_i = 0;
    zero_port(s->top->cfg_data_i);
    s->top->in_valid_i = 0;
    zero_port(s->top->in_data_i);
    s->top->pre_valid_i = 0;
    zero_port(s->top->pre_data_i);
    s->top->out_ready_i = 1;
}

}  // namespace

#if defined(__x86_64__) && defined(__GNUC__)
#define HX_X86_VECTORS 1
#include <immintrin.h>

namespace {

// hx_pack with x86 vector instructions, chosen at run time where the CPU has them (F16C and
// SSE4.1): four features of a beat are gathered into one vector and converted at once, the
// rest of the beat's features one by one. The beat's features are consecutive little-endian
// fields, so four converted features are its next 8 (fp16) or 4 (int8) bytes.
//   fp16: vcvtps2ph, round to nearest even: the same bits as f32_to_f16 for every finite
//         input;
//   int8: x * scale in float32, rounded to nearest even (roundps), clamped to [-128, 127]:
//         the same steps as f32_to_i8.
// tests/test_rtl_backend.py checks both on every rounding edge and every feature count from
// 1 to 9. 3.4x faster than one feature at a time: 2.7 against 9.0 ns a beat of four fp16
// features, 3.3 against 11.6 for int8; and the packing runs beside the simulator on the
// host's other core.
// (One instance a format, so that the format is not tested per beat.)
template <bool Fp16>
__attribute__((target("f16c,sse4.1"))) void pack_x86(const float* A, int64_t n_rows,
                                                       int64_t d, const int32_t* dims, int c,
                                                       int l, float input_scale,
                                                       uint32_t* beats, int in_words) {
    const size_t beat_bytes = 4u * static_cast<size_t>(in_words);
    const size_t feat_bytes = Fp16 ? 2 : 1;
    const __m128 scale = _mm_set1_ps(input_scale);
    const __m128 lo = _mm_set1_ps(-128.0f), hi = _mm_set1_ps(127.0f);
    for (int64_t n = 0; n < n_rows; ++n) {
        const float* row = A + n * d;
        for (int cb = 0; cb < c; ++cb) {
            unsigned char* w = reinterpret_cast<unsigned char*>(beats + (n * c + cb) * in_words);
            const int32_t* dd = dims + cb * l;
            int lv = 0;
            for (; lv + 4 <= l; lv += 4) {
                const __m128 x = _mm_setr_ps(row[dd[lv]], row[dd[lv + 1]], row[dd[lv + 2]],
                                             row[dd[lv + 3]]);
                if (Fp16) {
                    const __m128i h = _mm_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT);
                    _mm_storel_epi64(reinterpret_cast<__m128i*>(w + 2 * lv), h);
                } else {
                    __m128 r = _mm_round_ps(_mm_mul_ps(x, scale),
                                            _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
                    r = _mm_min_ps(_mm_max_ps(r, lo), hi);
                    __m128i q = _mm_cvtps_epi32(r);  // integral and in range: exact
                    q = _mm_packs_epi32(q, q);
                    q = _mm_packs_epi16(q, q);
                    const int32_t b = _mm_cvtsi128_si32(q);
                    std::memcpy(w + lv, &b, 4);
                }
            }
            for (; lv < l; ++lv) {
                if (Fp16) {
                    const uint16_t v = static_cast<uint16_t>(
                        _cvtss_sh(row[dd[lv]], _MM_FROUND_TO_NEAREST_INT));
                    std::memcpy(w + 2 * lv, &v, 2);
                } else {
                    w[lv] = f32_to_i8(row[dd[lv]], input_scale);
                }
            }
            std::memset(w + feat_bytes * l, 0, beat_bytes - feat_bytes * static_cast<size_t>(l));
        }
    }
}

bool have_x86_vectors() {
    static const bool ok = __builtin_cpu_supports("f16c") && __builtin_cpu_supports("sse4.1");
    return ok;
}

}  // namespace
#endif

#define HX_API extern "C" __attribute__((visibility("default")))

extern "C" {

// Port widths of this build, for the Python side to check against RtlParams.
HX_API int hx_in_bits() { return static_cast<int>(8 * sizeof(Vhalut_accel::in_data_i)); }
HX_API int hx_trace_kind() { return trace_kind(); }

HX_API void* hx_create(const char* trace_path) { return sim_create(trace_path); }

// Returns 0, or -1 when writing the waveform failed (it is then incomplete).
HX_API int hx_destroy(void* p) { return sim_destroy(static_cast<Sim*>(p)); }

// Asynchronous active-low reset held for `cycles` clock edges (not counted by the reports).
HX_API void hx_reset(void* p, int cycles) { sim_reset(static_cast<Sim*>(p), cycles); }

// Configuration writes alone (no beats): write i is addr[i] with cfg_words uint32 of data
// data[i*cfg_words ..], one per cycle when cfg_ready_o. Returns the cycles spent, or -1 when
// the accelerator refused writes for max_idle cycles.
HX_API int64_t hx_config(void* p, const uint32_t* addr, const uint32_t* data, int cfg_words,
                         int64_t n, int64_t max_idle) {
    Sim* s = static_cast<Sim*>(p);
    int64_t i = 0, t = 0, idle = 0;
    while (i < n) {
        s->top->cfg_valid_i = 1;
        s->top->cfg_addr_i = addr[i];
        put_port(s->top->cfg_data_i, data + i * cfg_words, cfg_words);
        s->top->in_valid_i = 0;
        s->top->pre_valid_i = 0;
        s->top->out_ready_i = 1;
        settle(s);
        const bool fire = s->top->cfg_ready_o;
        edge(s);
        ++t;
        if (fire) {
            ++i;
            idle = 0;
        } else if (++idle > max_idle) {
            t = -1;
            break;
        }
    }
    idle_inputs(s);
    settle(s);
    return t;
}

// One part of a stream of jobs. Three queues are offered at once, one entry per cycle each:
//  * configuration writes cfg[cfg_idx0 .. n_cfg) (addr, cfg_words uint32 of data each), taken
//    when cfg_ready_o;
//  * input beats beats[0 .. n_beats) (in_words uint32 each), offered only once the writes
//    before index `gate` have been taken (the job's SWAP: beats follow it a cycle later);
//  * preload beats pre[pre_idx0 .. n_pre): preload beat i is the result beat out[pre_map[i]]
//    of an earlier row (the previous codebook pass), offered once that result has been taken.
// Results land in out[out_idx0 .. n_out) (out_words uint32 each). valid_pat / ready_pat
// (length > 0) are cyclic 0/1 patterns over the stream's cycles (t0 + t) for the input valid
// and the output ready; otherwise the splitmix64 streams rng[0] / rng[1] with thresholds
// valid_thr / ready_thr (0: never) make random bubbles / back-pressure.
// A part that is not the last (final == 0) returns as soon as its last beat is taken, leaving
// rows in flight and writes or preloads queued; the next part goes on from there (its results
// land after out_idx0, the patterns continue at cycle t0), so a stream cut into parts takes
// exactly the cycles of one whole stream, and only the last part drains.
// counts[8]: stream (beats taken), stall, drain, cycles of this part, results taken so far
// (out_idx), writes taken so far (cfg_idx), config (cycles with beats waiting for the gate,
// no beat taken), preload beats taken so far (pre_idx); stream + stall + config + drain =
// cycles. Returns 0, or -1 when no handshake happened for max_idle cycles (a hang), or -2
// when the accelerator offers a result after the last one.
HX_API int hx_stream(void* p, const uint32_t* beats, int64_t n_beats, int in_words, uint32_t* out,
              int64_t n_out, int out_words, const uint8_t* valid_pat, int64_t valid_len,
              const uint8_t* ready_pat, int64_t ready_len, uint64_t* rng, uint64_t valid_thr,
              uint64_t ready_thr, int64_t max_idle, int64_t out_idx0, int64_t t0, int final,
              const uint32_t* cfg_addr, const uint32_t* cfg_data, int cfg_words, int64_t n_cfg,
              int64_t cfg_idx0, int64_t gate, const int64_t* pre_map, int64_t n_pre,
              int64_t pre_idx0, int64_t* counts) {
    Sim* s = static_cast<Sim*>(p);
    Vhalut_accel* top = s->top;
    int64_t t = 0, in_idx = 0, out_idx = out_idx0, last_in = -1, last_fire = 0;
    int64_t cfg_idx = cfg_idx0, pre_idx = pre_idx0, waited = 0;
    int rc = 0;
    bool held = false;  // a beat offered and not yet taken stays offered (valid/ready rule)
    while (in_idx < n_beats || (final && (out_idx < n_out || cfg_idx < n_cfg))) {
        bool want_valid = true, want_ready = true;
        if (valid_len > 0) {
            want_valid = valid_pat[(t0 + t) % valid_len] != 0;
        } else if (valid_thr > 0) {
            want_valid = !((splitmix64(rng[0]) >> 11) < valid_thr);
        }
        if (ready_len > 0) {
            want_ready = ready_pat[(t0 + t) % ready_len] != 0;
        } else if (ready_thr > 0) {
            want_ready = !((splitmix64(rng[1]) >> 11) < ready_thr);
        }
        const bool gated = cfg_idx < gate;
        const bool valid = (want_valid || held) && in_idx < n_beats && !gated;
        top->in_valid_i = valid ? 1 : 0;
        if (valid) {
            put_port(top->in_data_i, beats + in_idx * in_words, in_words);
        } else {
            zero_port(top->in_data_i);
        }
        const bool cfg_valid = cfg_idx < n_cfg;
        top->cfg_valid_i = cfg_valid ? 1 : 0;
        if (cfg_valid) {
            top->cfg_addr_i = cfg_addr[cfg_idx];
            put_port(top->cfg_data_i, cfg_data + cfg_idx * cfg_words, cfg_words);
        }
        const bool pre_valid = pre_idx < n_pre && pre_map[pre_idx] < out_idx;
        top->pre_valid_i = pre_valid ? 1 : 0;
        if (pre_valid) put_port(top->pre_data_i, out + pre_map[pre_idx] * out_words, out_words);
        top->out_ready_i = want_ready ? 1 : 0;
        settle(s);
        const bool in_fire = valid && top->in_ready_o;
        held = valid && !in_fire;
        const bool out_fire = want_ready && top->out_valid_o;
        const bool cfg_fire = cfg_valid && top->cfg_ready_o;
        const bool pre_fire = pre_valid && top->pre_ready_o;
        if (out_fire) {
            if (out_idx >= n_out) {
                rc = -2;
                break;
            }
            get_port(top->out_data_o, out + out_idx * out_words, out_words);
            ++out_idx;
        }
        if (in_fire) {
            ++in_idx;
            last_in = t;
        } else if (in_idx < n_beats && gated) {
            ++waited;
        }
        if (cfg_fire) ++cfg_idx;
        if (pre_fire) ++pre_idx;
        if (in_fire || out_fire || cfg_fire || pre_fire) last_fire = t;
        edge(s);
        ++t;
        if (t - last_fire > max_idle) {
            rc = -1;
            break;
        }
    }
    if (rc == 0 && final) {  // nothing may follow the last result
        idle_inputs(s);
        top->out_ready_i = 0;
        settle(s);
        if (top->out_valid_o) rc = -2;
    }
    idle_inputs(s);
    settle(s);
    const int64_t busy = final ? last_in + 1 : t;  // cycles up to the last beat (or the end)
    counts[0] = in_idx;
    counts[1] = busy - in_idx - waited;
    counts[2] = t - busy;
    counts[3] = t;
    counts[4] = out_idx;
    counts[5] = cfg_idx;
    counts[6] = waited;
    counts[7] = pre_idx;
    return rc;
}

// The host side of the input beats (golden.gather + pack_beats, for speed): for every row n
// and codebook c, feature l = A[n, dims[c, l]] in the threshold format (fmt 0: fp16, 1: int8
// with input_scale) at bits [l*FeatW, (l+1)*FeatW) of beat n*C + c, in_words words a beat.
// A: (n_rows, d) float32, finite; dims: (c, l) int32 in [0, d); beats: (n_rows*c, in_words).
HX_API void hx_pack(const float* A, int64_t n_rows, int64_t d, const int32_t* dims, int c,
                    int l, int fmt, float input_scale, uint32_t* beats, int in_words) {
#if HX_X86_VECTORS
    if (have_x86_vectors()) {
        if (fmt == 0) {
            pack_x86<true>(A, n_rows, d, dims, c, l, input_scale, beats, in_words);
        } else {
            pack_x86<false>(A, n_rows, d, dims, c, l, input_scale, beats, in_words);
        }
        return;
    }
#endif
    const int feat_w = fmt == 0 ? 16 : 8;
    for (int64_t n = 0; n < n_rows; ++n) {
        const float* row = A + n * d;
        for (int cb = 0; cb < c; ++cb) {
            uint32_t* w = beats + (n * c + cb) * in_words;
            for (int i = 0; i < in_words; ++i) w[i] = 0u;
            for (int lv = 0; lv < l; ++lv) {
                const float x = row[dims[cb * l + lv]];
                const uint32_t v = fmt == 0 ? f32_to_f16(x) : f32_to_i8(x, input_scale);
                const int bit = lv * feat_w;
                w[bit / 32] |= v << (bit % 32);
            }
        }
    }
}

HX_API int64_t hx_cycle(void* p) { return static_cast<int64_t>(static_cast<Sim*>(p)->cycle); }

}  // extern "C"

#ifdef HX_MAIN
// The speed ceiling: the same model, the same per-cycle protocol, no Python and no buffers.
// Usage: ceiling N_BEATS  -> prints "cycles seconds"
#include <chrono>
#include <cstdio>
#include <cstdlib>

int main(int argc, char** argv) {
    const int64_t n = argc > 1 ? std::atoll(argv[1]) : 1000000;
    Sim* s = static_cast<Sim*>(hx_create(nullptr));
    hx_reset(s, 2);
    Vhalut_accel* top = s->top;
    uint64_t rng = 12345;
    uint32_t words[64];
    const int in_words = (hx_in_bits() + 31) / 32;
    int64_t taken = 0, results = 0, t = 0;
    const auto t0 = std::chrono::steady_clock::now();
    while (taken < n) {
        for (int i = 0; i < in_words; ++i) words[i] = static_cast<uint32_t>(splitmix64(rng));
        top->in_valid_i = 1;
        put_port(top->in_data_i, words, in_words);
        top->out_ready_i = 1;
        settle(s);
        if (top->in_ready_o) ++taken;
        if (top->out_valid_o) ++results;
        edge(s);
        ++t;
    }
    const double sec =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("%lld %.6f %lld\n", static_cast<long long>(t), sec,
                static_cast<long long>(results));
    hx_destroy(s);
    return 0;
}
#endif
