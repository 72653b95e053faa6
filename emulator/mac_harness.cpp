// Batch harness for the Verilated mac_accel (the multiply-accumulate baseline,
// docs/mac-baseline.md): a plain C loop over numpy buffers, called from Python through ctypes
// (emulator/mac.py). Built with the model by emulator/mac.py (emulator/build.py's cache):
//   verilator --cc --exe mac_harness.cpp --build -CFLAGS -fPIC -LDFLAGS -shared -o lib...so
//
// The cycle protocol, the handshake counts and the random bubbles / back-pressure are those of
// halut_accel's harness (emulator/harness.cpp), so that the two accelerators' cycle reports
// are counted the same way:
//   1. with clk_i low, drive this cycle's inputs and eval() (combinational outputs settle)
//   2. sample the handshakes: a beat is taken when in_valid_i && in_ready_o, a result when
//      out_valid_o && out_ready_i, a configuration write when cfg_valid_i && cfg_ready_o
//   3. clk_i high, eval() (the rising edge), clk_i low
// Trace time stamps: 2*cycle with the inputs of the cycle, 2*cycle+1 after the rising edge.
// Random bubbles / back-pressure: splitmix64 (two streams, each drawn once per streaming cycle
// when its probability is non-zero); a cycle is a bubble when (next() >> 11) < threshold,
// threshold = round(p * 2^53) (emulator.harness.Handshake).
// The library is built with -fvisibility=hidden: only the mx_* functions are exported.

#include <cstdint>

#include "Vmac_accel.h"
#include "Vmac_accel___024root.h"
#include "verilated.h"

#define HARNESS_TOP Vmac_accel
#define HARNESS_ROOT Vmac_accel___024root
#define HARNESS_ROOT_EVAL Vmac_accel___024root___eval
#include "harness_sim.h"  // Sim, the clock edge, port access, splitmix64 (shared with halut)

namespace {

inline void idle_inputs(Sim* s) {
    s->top->cfg_valid_i = 0;
    s->top->cfg_addr_i = 0;
    zero_port(s->top->cfg_data_i);
    s->top->in_valid_i = 0;
    zero_port(s->top->in_data_i);
    s->top->out_ready_i = 1;
}

}  // namespace

#define MX_API extern "C" __attribute__((visibility("default")))

extern "C" {

// Port widths of this build, for the Python side to check against MacParams.
MX_API int mx_in_bits() { return static_cast<int>(8 * sizeof(Vmac_accel::in_data_i)); }
MX_API int mx_out_bits() { return static_cast<int>(8 * sizeof(Vmac_accel::out_data_o)); }
MX_API int mx_trace_kind() { return trace_kind(); }

MX_API void* mx_create(const char* trace_path) { return sim_create(trace_path); }

// Returns 0, or -1 when writing the waveform failed (it is then incomplete).
MX_API int mx_destroy(void* p) { return sim_destroy(static_cast<Sim*>(p)); }

// Asynchronous active-low reset held for `cycles` clock edges (not counted by the reports).
MX_API void mx_reset(void* p, int cycles) { sim_reset(static_cast<Sim*>(p), cycles); }

// One part of a stream of weight sets (halut's hx_stream without the preload port). Two
// queues are offered at once, one entry per cycle each:
//  * configuration writes cfg[cfg_idx0 .. n_cfg) (addr, cfg_words uint32 of data each), taken
//    when cfg_ready_o;
//  * input beats beats[0 .. n_beats) (in_words uint32 each), offered only once the writes
//    before index `gate` have been taken (the weight set's SWAP: beats follow it a cycle
//    later).
// Results land in out[out_idx0 .. n_out) (out_words uint32 each). valid_pat / ready_pat
// (length > 0) are cyclic 0/1 patterns over the stream's cycles (t0 + t); otherwise the
// splitmix64 streams rng[0] / rng[1] with thresholds valid_thr / ready_thr (0: never) make
// random bubbles / back-pressure. A part that is not the last (final == 0) returns as soon as
// its last beat is taken; only the last part drains.
// counts[8] as in harness.cpp: stream (beats taken), stall, drain, cycles of this part,
// results taken so far, writes taken so far, config (cycles with beats waiting for the gate,
// no beat taken), 0 (no preload port); stream + stall + config + drain = cycles. Returns 0,
// or -1 when no handshake happened for max_idle cycles (a hang), or -2 when the accelerator
// offers a result after the last one.
MX_API int mx_stream(void* p, const uint32_t* beats, int64_t n_beats, int in_words,
                     uint32_t* out, int64_t n_out, int out_words, const uint8_t* valid_pat,
                     int64_t valid_len, const uint8_t* ready_pat, int64_t ready_len,
                     uint64_t* rng, uint64_t valid_thr, uint64_t ready_thr, int64_t max_idle,
                     int64_t out_idx0, int64_t t0, int final, const uint32_t* cfg_addr,
                     const uint32_t* cfg_data, int cfg_words, int64_t n_cfg, int64_t cfg_idx0,
                     int64_t gate, int64_t* counts) {
    Sim* s = static_cast<Sim*>(p);
    Vmac_accel* top = s->top;
    int64_t t = 0, in_idx = 0, out_idx = out_idx0, last_in = -1, last_fire = 0;
    int64_t cfg_idx = cfg_idx0, waited = 0;
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
        top->out_ready_i = want_ready ? 1 : 0;
        settle(s);
        const bool in_fire = valid && top->in_ready_o;
        held = valid && !in_fire;
        const bool out_fire = want_ready && top->out_valid_o;
        const bool cfg_fire = cfg_valid && top->cfg_ready_o;
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
        if (in_fire || out_fire || cfg_fire) last_fire = t;
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
    counts[7] = 0;
    return rc;
}

MX_API int64_t mx_cycle(void* p) { return static_cast<int64_t>(static_cast<Sim*>(p)->cycle); }

}  // extern "C"
