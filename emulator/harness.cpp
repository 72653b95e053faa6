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

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "Vhalut_accel.h"
#include "verilated.h"

#if VM_TRACE
#if VM_TRACE_FST
#include "verilated_fst_c.h"
typedef VerilatedFstC HxTrace;
#else
#include "verilated_vcd_c.h"
typedef VerilatedVcdC HxTrace;
#endif
#endif

namespace {

struct Sim {
    VerilatedContext* ctx;
    Vhalut_accel* top;
#if VM_TRACE
    HxTrace* tfp;
#endif
    uint64_t cycle;  // cycles run since construction (reset included)
};

// ---- port access: scalar ports are C integers up to 64 bits, wider ones VlWide<N> ----------
template <typename T>
inline void put_port(T& port, const uint32_t* w, int n) {
    uint64_t v = w[0];
    if (n > 1 && sizeof(T) > 4) v |= static_cast<uint64_t>(w[1]) << 32;
    port = static_cast<T>(v);
}
template <std::size_t N>
inline void put_port(VlWide<N>& port, const uint32_t* w, int n) {
    for (std::size_t i = 0; i < N; ++i) port[i] = (static_cast<int>(i) < n) ? w[i] : 0u;
}
template <typename T>
inline void get_port(const T& port, uint32_t* w, int n) {
    const uint64_t v = static_cast<uint64_t>(port);
    w[0] = static_cast<uint32_t>(v);
    for (int i = 1; i < n; ++i) w[i] = (i == 1) ? static_cast<uint32_t>(v >> 32) : 0u;
}
template <std::size_t N>
inline void get_port(const VlWide<N>& port, uint32_t* w, int n) {
    for (int i = 0; i < n; ++i) w[i] = (static_cast<std::size_t>(i) < N) ? port[i] : 0u;
}
template <typename T>
inline void zero_port(T& port) { port = 0; }
template <std::size_t N>
inline void zero_port(VlWide<N>& port) { for (std::size_t i = 0; i < N; ++i) port[i] = 0u; }

inline uint64_t splitmix64(uint64_t& s) {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

inline void settle(Sim* s) {
    s->top->clk_i = 0;
    s->top->eval();
}

inline void edge(Sim* s) {
#if VM_TRACE
    if (s->tfp) s->tfp->dump(2 * s->cycle);
#endif
    s->top->clk_i = 1;
    s->top->eval();
#if VM_TRACE
    if (s->tfp) s->tfp->dump(2 * s->cycle + 1);
#endif
    s->top->clk_i = 0;
    s->cycle++;
}

inline void idle_inputs(Sim* s) {
    s->top->cfg_valid_i = 0;
    s->top->cfg_addr_i = 0;
    s->top->cfg_data_i = 0;
    s->top->in_valid_i = 0;
    zero_port(s->top->in_data_i);
    s->top->out_ready_i = 1;
}

}  // namespace

#define HX_API extern "C" __attribute__((visibility("default")))

extern "C" {

// Port widths of this build, for the Python side to check against RtlParams.
HX_API int hx_in_bits() { return static_cast<int>(8 * sizeof(Vhalut_accel::in_data_i)); }
HX_API int hx_trace_kind() {
#if VM_TRACE
#if VM_TRACE_FST
    return 2;
#else
    return 1;
#endif
#else
    return 0;
#endif
}

HX_API void* hx_create(const char* trace_path) {
    Sim* s = new Sim();
    s->ctx = new VerilatedContext;
    s->ctx->traceEverOn(trace_path != nullptr);
    s->top = new Vhalut_accel{s->ctx};
    s->cycle = 0;
#if VM_TRACE
    s->tfp = nullptr;
    if (trace_path) {
        s->tfp = new HxTrace;
        s->top->trace(s->tfp, 99);
        s->tfp->open(trace_path);
    }
#endif
    idle_inputs(s);
    s->top->rst_ni = 1;
    settle(s);
    return s;
}

HX_API void hx_destroy(void* p) {
    Sim* s = static_cast<Sim*>(p);
    if (!s) return;
#if VM_TRACE
    if (s->tfp) {
        s->tfp->dump(2 * s->cycle);
        s->tfp->close();
        delete s->tfp;
    }
#endif
    s->top->final();
    delete s->top;
    delete s->ctx;
    delete s;
}

// Asynchronous active-low reset held for `cycles` clock edges (not counted by the reports).
HX_API void hx_reset(void* p, int cycles) {
    Sim* s = static_cast<Sim*>(p);
    idle_inputs(s);
    s->top->rst_ni = 0;
    for (int i = 0; i < cycles; ++i) {
        settle(s);
        edge(s);
    }
    s->top->rst_ni = 1;
    settle(s);
}

// One configuration write per cycle; returns the cycles spent (= n).
HX_API int64_t hx_config(void* p, const uint32_t* addr, const uint16_t* data, int64_t n) {
    Sim* s = static_cast<Sim*>(p);
    for (int64_t i = 0; i < n; ++i) {
        s->top->cfg_valid_i = 1;
        s->top->cfg_addr_i = addr[i];
        s->top->cfg_data_i = data[i];
        s->top->in_valid_i = 0;
        s->top->out_ready_i = 1;
        settle(s);
        edge(s);
    }
    idle_inputs(s);
    settle(s);
    return n;
}

// Stream n_beats input beats (in_words uint32 each) and collect n_out output beats
// (out_words uint32 each). valid_pat / ready_pat (length > 0) are cyclic 0/1 patterns over the
// streaming cycles; otherwise the splitmix64 streams rng[0] / rng[1] with thresholds
// valid_thr / ready_thr (0: never) make random bubbles / back-pressure.
// counts[0..4] = stream, stall, drain, cycles. Returns 0, or -1 when no handshake happened for
// max_idle cycles (a hang), or -2 when the accelerator offers a result after the last one.
HX_API int hx_stream(void* p, const uint32_t* beats, int64_t n_beats, int in_words, uint32_t* out,
              int64_t n_out, int out_words, const uint8_t* valid_pat, int64_t valid_len,
              const uint8_t* ready_pat, int64_t ready_len, uint64_t* rng, uint64_t valid_thr,
              uint64_t ready_thr, int64_t max_idle, int64_t* counts) {
    Sim* s = static_cast<Sim*>(p);
    Vhalut_accel* top = s->top;
    int64_t t = 0, in_idx = 0, out_idx = 0, last_in = -1, last_out = -1, last_fire = 0;
    int rc = 0;
    while (out_idx < n_out || in_idx < n_beats) {
        bool want_valid = true, want_ready = true;
        if (valid_len > 0) {
            want_valid = valid_pat[t % valid_len] != 0;
        } else if (valid_thr > 0) {
            want_valid = !((splitmix64(rng[0]) >> 11) < valid_thr);
        }
        if (ready_len > 0) {
            want_ready = ready_pat[t % ready_len] != 0;
        } else if (ready_thr > 0) {
            want_ready = !((splitmix64(rng[1]) >> 11) < ready_thr);
        }
        const bool valid = want_valid && in_idx < n_beats;
        top->in_valid_i = valid ? 1 : 0;
        if (valid) {
            put_port(top->in_data_i, beats + in_idx * in_words, in_words);
        } else {
            zero_port(top->in_data_i);
        }
        top->out_ready_i = want_ready ? 1 : 0;
        settle(s);
        const bool in_fire = valid && top->in_ready_o;
        const bool out_fire = want_ready && top->out_valid_o;
        if (out_fire) {
            if (out_idx >= n_out) {
                rc = -2;
                break;
            }
            get_port(top->out_data_o, out + out_idx * out_words, out_words);
            ++out_idx;
            last_out = t;
        }
        if (in_fire) {
            ++in_idx;
            last_in = t;
        }
        if (in_fire || out_fire) last_fire = t;
        edge(s);
        ++t;
        if (t - last_fire > max_idle) {
            rc = -1;
            break;
        }
    }
    if (rc == 0) {  // nothing may follow the last result
        top->in_valid_i = 0;
        zero_port(top->in_data_i);
        top->out_ready_i = 0;
        settle(s);
        if (top->out_valid_o) rc = -2;
    }
    idle_inputs(s);
    settle(s);
    counts[0] = in_idx;
    counts[1] = (last_in + 1) - in_idx;
    counts[2] = last_out - last_in;
    counts[3] = t;
    return rc;
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
