// IEEE 754-2008 binary16 comparison "a > b" (compareSignalingGreater's result, no flags).
//
// IEEE rules implemented:
//   * the total order of real values: sign first, then biased exponent and fraction
//     read as one unsigned magnitude (which is monotone for binary formats),
//   * -0 == +0 (so neither +0 > -0 nor -0 > +0),
//   * subnormals are compared exactly (they are ordinary magnitudes below the normals),
//   * +inf / -inf are the largest / smallest values,
//   * NaN: unordered, so a > b is false when either operand is a NaN. The host never sends
//     a NaN feature (it rejects them) and thresholds are checked on load; this rule is only
//     what the hardware does anyway.
// NaN and zero come from the shared classifier (halut_fp_classify). Purely combinational.
module halut_fp16_gt (
  input  logic [halut_pkg::Fp16W-1:0] a_i,
  input  logic [halut_pkg::Fp16W-1:0] b_i,
  output logic                        gt_o
);

  localparam int unsigned W = halut_pkg::Fp16W;

  // ---- fields: sign and magnitude {exponent, mantissa} ------------------------------------
  logic         a_sign, b_sign;
  logic [W-2:0] a_mag, b_mag;

  assign a_sign = a_i[W-1];
  assign b_sign = b_i[W-1];
  assign a_mag  = a_i[W-2:0];
  assign b_mag  = b_i[W-2:0];

  // ---- classes ------------------------------------------------------------------------------
  logic a_nan, b_nan, a_zero, b_zero;
  // classes this comparison does not need (Verilator ignores *unused* signals)
  logic unused_a_normal, unused_a_subnormal, unused_a_inf, unused_a_snan, unused_a_qnan;
  logic unused_b_normal, unused_b_subnormal, unused_b_inf, unused_b_snan, unused_b_qnan;

  halut_fp_classify #(
    .ExpW(halut_pkg::Fp16ExpW),
    .ManW(halut_pkg::Fp16ManW)
  ) u_class_a (
    .op_i           (a_i),
    .is_normal_o    (unused_a_normal),
    .is_subnormal_o (unused_a_subnormal),
    .is_zero_o      (a_zero),
    .is_inf_o       (unused_a_inf),
    .is_nan_o       (a_nan),
    .is_signalling_o(unused_a_snan),
    .is_quiet_o     (unused_a_qnan)
  );

  halut_fp_classify #(
    .ExpW(halut_pkg::Fp16ExpW),
    .ManW(halut_pkg::Fp16ManW)
  ) u_class_b (
    .op_i           (b_i),
    .is_normal_o    (unused_b_normal),
    .is_subnormal_o (unused_b_subnormal),
    .is_zero_o      (b_zero),
    .is_inf_o       (unused_b_inf),
    .is_nan_o       (b_nan),
    .is_signalling_o(unused_b_snan),
    .is_quiet_o     (unused_b_qnan)
  );

  // ---- compare ------------------------------------------------------------------------------
  always_comb begin
    if (a_nan || b_nan || (a_zero && b_zero)) begin
      gt_o = 1'b0;
    end else if (a_sign != b_sign) begin
      // different signs and not both zero: the positive one is larger
      gt_o = !a_sign;
    end else if (!a_sign) begin
      gt_o = a_mag > b_mag;
    end else begin
      gt_o = a_mag < b_mag;
    end
  end

endmodule
