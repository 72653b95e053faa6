// The fp32 accumulation of fp16 LUT entries, split over the two pipeline stages of a column
// (halut_accel, LutFmt = LutFmtFp16). Two purely combinational halves; the value register
// between them (a_val_q) and the accumulator are halut_accel's:
//
//   LUT-read stage     : lut_i (the fp16 entry read this cycle) -> val_o, the entry converted
//                        to binary32 (halut_fp16_to_fp32, exact) without its redundant bits;
//   accumulation stage : sum_o = acc_i + val_i in binary32 (halut_fp32_add), val_i being the
//                        registered val_o; the binary32 word is restored by wiring alone.
//
// The conversion used to sit in the accumulation stage, in front of the adder, inside the
// loop acc_q -> adder -> acc_q that sets the clock; here it is a cycle earlier, beside the
// LUT read, where there is time (docs/rtl.md, "fp32 accumulation timing").
//
// The packed value (ValW = 18 bits): the binary32 value of a binary16 number has its low
// Fp32ManW - Fp16ManW (13) fraction bits 0, and exponent bits 6 and 5 equal (its exponent is
// 0, 103..142 or 255). The register keeps the other bits, {sign, exponent bit 7, exponent
// bits 5:0, fraction bits 22:13}: registered as 32 bits, synthesis removes the constant
// flip-flops and merges the two equal ones into one, and the netlist then aliases bits of one
// register (`assign {a[29], a[12:0]} = {a[28], 13'h0}`), which OpenSTA 2.0.17 cannot read.
module halut_fp16_acc #(
  localparam int unsigned ValW = halut_pkg::Fp32W - 1 - (halut_pkg::Fp32ManW -
                                                          halut_pkg::Fp16ManW)
) (
  // LUT-read stage
  input  logic [halut_pkg::Fp16W-1:0] lut_i,
  output logic [ValW-1:0]             val_o,
  // accumulation stage
  input  logic [halut_pkg::Fp32W-1:0] acc_i,
  input  logic [ValW-1:0]             val_i,
  output logic [halut_pkg::Fp32W-1:0] sum_o
);

  localparam int unsigned W     = halut_pkg::Fp32W;
  localparam int unsigned ExpW  = halut_pkg::Fp32ExpW;
  localparam int unsigned ManW  = halut_pkg::Fp32ManW;
  localparam int unsigned ZeroW = halut_pkg::Fp32ManW - halut_pkg::Fp16ManW;  // 13
  localparam int unsigned Exp6  = ManW + ExpW - 2;  // bit of exponent bit 6 (29)

  // ---- LUT-read stage: convert and pack ------------------------------------------------------
  logic [W-1:0] cvt;
  logic         unused_cvt;  // exponent bit 6 (a copy of bit 5) and the zero fraction bits

  halut_fp16_to_fp32 u_cvt (
    .h_i(lut_i),
    .f_o(cvt)
  );

  assign val_o      = {cvt[W-1 -: 2], cvt[Exp6-1:ZeroW]};
  assign unused_cvt = ^{cvt[Exp6], cvt[ZeroW-1:0]};

  // ---- accumulation stage: unpack and add ----------------------------------------------------
  logic [W-1:0] val32;

  assign val32 = {val_i[ValW-1 -: 2], val_i[ValW-3], val_i[ValW-3:0], {ZeroW{1'b0}}};

  halut_fp32_add u_add (
    .a_i  (acc_i),
    .b_i  (val32),
    .sum_o(sum_o)
  );

endmodule
