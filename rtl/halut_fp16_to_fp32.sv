// IEEE 754-2008 conversion binary16 -> binary32 (convertFormat), exact.
//
// IEEE rules implemented:
//   * every binary16 value is exactly representable in binary32: no rounding happens,
//   * signed zeros keep their sign,
//   * subnormal inputs (exponent field 0, fraction != 0) are normalised: value
//     frac * 2^-24 with lz leading zeros in the 10-bit fraction becomes a normal binary32
//     with biased exponent 127 - 15 - lz = 112 - lz and the fraction shifted left by lz + 1
//     (the leading one becomes the hidden bit),
//   * infinities stay infinities of the same sign,
//   * NaN: the result is a quiet NaN that keeps the sign and the 9 low payload bits
//     (fraction bit 9, the quiet bit, is forced to 1), i.e. {s, 8'hFF, 1, frac[8:0], 13'b0},
//     as x86 F16C's vcvtph2ps does. LUT entries are finite (checked on the host), so this
//     only documents what happens anyway.
// Classes from halut_fp_classify, the subnormal shift from halut_lzc. Purely combinational.
module halut_fp16_to_fp32 (
  input  logic [halut_pkg::Fp16W-1:0] h_i,
  output logic [halut_pkg::Fp32W-1:0] f_o
);

  localparam int unsigned ExpW16 = halut_pkg::Fp16ExpW;
  localparam int unsigned ManW16 = halut_pkg::Fp16ManW;
  localparam int unsigned ExpW32 = halut_pkg::Fp32ExpW;
  localparam int unsigned ManW32 = halut_pkg::Fp32ManW;
  // rebias 15 -> 127
  localparam int unsigned Rebias = halut_pkg::Fp32Bias - halut_pkg::Fp16Bias;
  localparam int unsigned LzW    = $clog2(ManW16 + 1); // halut_lzc's count width

  // ---- fields -----------------------------------------------------------------------------
  logic              sign;
  logic [ExpW16-1:0] exp16;
  logic [ManW16-1:0] frac16;

  assign sign   = h_i[ExpW16 + ManW16];
  assign exp16  = h_i[ManW16 +: ExpW16];
  assign frac16 = h_i[ManW16-1:0];

  // ---- classes ------------------------------------------------------------------------------
  logic is_zero, is_subnormal, is_inf, is_nan;
  // classes the conversion does not need (Verilator ignores *unused* signals)
  logic unused_normal, unused_snan, unused_qnan;

  halut_fp_classify #(
    .ExpW(ExpW16),
    .ManW(ManW16)
  ) u_class (
    .op_i           (h_i),
    .is_normal_o    (unused_normal),
    .is_subnormal_o (is_subnormal),
    .is_zero_o      (is_zero),
    .is_inf_o       (is_inf),
    .is_nan_o       (is_nan),
    .is_signalling_o(unused_snan),
    .is_quiet_o     (unused_qnan)
  );

  // ---- subnormal normalisation: leading zeros of the fraction -------------------------------
  logic [LzW-1:0]    lz;
  logic              unused_frac_empty; // a zero fraction is the zero class, handled above
  logic [ManW16-1:0] sub_frac;          // shifted so the leading one drops out
  logic [ExpW32-1:0] sub_exp;

  halut_lzc #(
    .Width(ManW16)
  ) u_lzc (
    .in_i   (frac16),
    .cnt_o  (lz),
    .empty_o(unused_frac_empty)
  );

  assign sub_frac = frac16 << (lz + 1'b1);
  assign sub_exp  = ExpW32'(Rebias) - {{(ExpW32 - LzW){1'b0}}, lz};

  // ---- result -------------------------------------------------------------------------------
  always_comb begin
    if (is_zero) begin
      f_o = {sign, {(ExpW32 + ManW32){1'b0}}};
    end else if (is_subnormal) begin
      f_o = {sign, sub_exp, sub_frac, {(ManW32 - ManW16){1'b0}}};
    end else if (is_inf) begin
      f_o = {sign, {ExpW32{1'b1}}, {ManW32{1'b0}}};
    end else if (is_nan) begin
      f_o = {sign, {ExpW32{1'b1}}, 1'b1, frac16[ManW16-2:0], {(ManW32 - ManW16){1'b0}}};
    end else begin
      // normal
      f_o = {sign, {{(ExpW32 - ExpW16){1'b0}}, exp16} + ExpW32'(Rebias), frac16,
             {(ManW32 - ManW16){1'b0}}};
    end
  end

endmodule
