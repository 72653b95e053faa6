// A VCD writer that survives a failed write (a full disk), shared by the batch harness
// (emulator/harness.cpp) and the cycle driver's pyverilator wrapper (patched in by
// emulator/build.py). Verilator's own file object reports a failed write with VL_FATAL,
// whose flush callback re-locks the trace's mutex: the process deadlocked. This one
// remembers the failure and drops the rest of the waveform, so the run finishes and the
// caller reports one clear error (HalutVcdC::failed()).
#ifndef HALUT_VCD_FILE_H
#define HALUT_VCD_FILE_H

#include <cerrno>

#include "verilated_vcd_c.h"

class HalutVcdFile final : public VerilatedVcdFile {
public:
    bool failed = false;
    ssize_t write(const char* bufp, ssize_t len) override {
        ssize_t done = 0;
        while (!failed && done < len) {
            errno = 0;
            const ssize_t got = VerilatedVcdFile::write(bufp + done, len - done);
            if (got > 0) {
                done += got;
            } else if (errno != EAGAIN && errno != EINTR) {
                failed = true;
            }
        }
        return len;  // never an error to Verilator
    }
};

class HalutVcdC final : public VerilatedVcdC {
    HalutVcdFile m_file;  // outlives the writer: ~HalutVcdC closes first

public:
    HalutVcdC()
        : VerilatedVcdC{&m_file} {}
    ~HalutVcdC() override { close(); }
    bool failed() const { return m_file.failed; }
};

#endif  // HALUT_VCD_FILE_H
