// Vector testbench for halut_units_tb: reads "A B" hex words per line from argv[1], drives
// the purely combinational units, writes "CVT GT16 GTI8 ADD ACC LZC CLS" hex
// per line to argv[2].
#include <cstdio>
#include <memory>

#include "Vhalut_units_tb.h"
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
  auto dut = std::make_unique<Vhalut_units_tb>(ctx.get());
  unsigned a = 0, b = 0;
  long n = 0;
  while (std::fscanf(in, "%x %x", &a, &b) == 2) {
    dut->a_i = a;
    dut->b_i = b;
    dut->eval();
    std::fprintf(out, "%08x %x %x %08x %08x %08x %04x\n", static_cast<unsigned>(dut->cvt_o),
                 static_cast<unsigned>(dut->gt16_o), static_cast<unsigned>(dut->gti8_o),
                 static_cast<unsigned>(dut->add_o), static_cast<unsigned>(dut->acc_o),
                 static_cast<unsigned>(dut->lzc_o), static_cast<unsigned>(dut->cls_o));
    ++n;
  }
  dut->final();
  std::fclose(in);
  if (std::fclose(out) != 0) {
    std::perror(argv[2]);
    return 2;
  }
  std::fprintf(stderr, "%ld vectors\n", n);
  return 0;
}
