// IEEE 754-2008 classification of one binary floating-point word (after PULP's
// `fpnew_classifier`), for any format {sign, ExpW exponent bits, ManW mantissa bits}:
// binary16 is ExpW 5 / ManW 10, binary32 ExpW 8 / ManW 23 (halut_pkg::Fp16* / Fp32*).
//
// IEEE rules implemented (exactly one of normal, subnormal, zero, inf, nan is set):
//   * zero       : exponent field 0, mantissa 0 (either sign),
//   * subnormal  : exponent field 0, mantissa != 0,
//   * normal     : exponent field neither 0 nor all ones,
//   * infinity   : exponent field all ones, mantissa 0 (either sign),
//   * NaN        : exponent field all ones, mantissa != 0; quiet when the mantissa's MSB is
//                  set, signalling when it is clear (IEEE 754-2008 6.2.1 recommendation).
// The sign is not classified (a zero, inf or NaN of either sign is still that class).
// Shared by halut_fp16_gt, halut_fp16_to_fp32 and halut_fp32_add. Purely combinational.
module halut_fp_classify #(
  parameter  int unsigned ExpW = 8,
  parameter  int unsigned ManW = 23,
  localparam int unsigned W    = 1 + ExpW + ManW
) (
  input  logic [W-1:0] op_i,
  output logic         is_normal_o,
  output logic         is_subnormal_o,
  output logic         is_zero_o,
  output logic         is_inf_o,
  output logic         is_nan_o,
  output logic         is_signalling_o,
  output logic         is_quiet_o
);

  if (ExpW < 2 || ManW < 2) begin : g_bad_format
    $error("halut_fp_classify: parameters ExpW and ManW must be at least 2");
  end

  logic [ExpW-1:0] exponent;
  logic [ManW-1:0] mantissa;
  logic            exp_zero, exp_ones, man_zero;
  logic            unused_sign; // the sign (bit W-1) does not change the class

  assign unused_sign = op_i[W-1];
  assign exponent = op_i[ManW +: ExpW];
  assign mantissa = op_i[ManW-1:0];
  assign exp_zero = (exponent == '0);
  assign exp_ones = (exponent == '1);
  assign man_zero = (mantissa == '0);

  assign is_normal_o     = !exp_zero && !exp_ones;
  assign is_subnormal_o  = exp_zero && !man_zero;
  assign is_zero_o       = exp_zero && man_zero;
  assign is_inf_o        = exp_ones && man_zero;
  assign is_nan_o        = exp_ones && !man_zero;
  assign is_signalling_o = is_nan_o && !mantissa[ManW-1];
  assign is_quiet_o      = is_nan_o && mantissa[ManW-1];

endmodule
