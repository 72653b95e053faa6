// Clocked vector testbench for halut_fp_acc_tb: reads "VALID START START_VAL LUT" hex per
// line from argv[1] (one line per clock cycle), writes acc_o after each rising edge as hex
// per line to argv[2].
#include <cstdio>
#include <memory>

#include "Vhalut_fp_acc_tb.h"
#include "verilated.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s VECTORS_IN RESULTS_OUT\n", argv[0]);
    return 2;
  }
  std::FILE* in = std::fopen(argv[1], "r");
  if (!in) {
    std::perror(argv[1]);
    return 2;
  }
  std::FILE* out = std::fopen(argv[2], "w");
  if (!out) {
    std::perror(argv[2]);
    return 2;
  }
  auto ctx = std::make_unique<VerilatedContext>();
  auto dut = std::make_unique<Vhalut_fp_acc_tb>(ctx.get());
  dut->clk_i = 0;
  dut->rst_ni = 0;
  dut->valid_i = 0;
  dut->eval();
  dut->rst_ni = 1;
  dut->eval();
  unsigned valid = 0, start = 0, start_val = 0, lut = 0;
  long n = 0;
  while (std::fscanf(in, "%x %x %x %x", &valid, &start, &start_val, &lut) == 4) {
    dut->valid_i = valid;
    dut->start_i = start;
    dut->start_val_i = start_val;
    dut->lut_i = lut;
    dut->clk_i = 0;
    dut->eval();
    dut->clk_i = 1;
    dut->eval();
    std::fprintf(out, "%08x\n", static_cast<unsigned>(dut->acc_o));
    ++n;
  }
  dut->final();
  std::fclose(in);
  if (std::fclose(out) != 0) {
    std::perror(argv[2]);
    return 2;
  }
  std::fprintf(stderr, "%ld cycles\n", n);
  return 0;
}
