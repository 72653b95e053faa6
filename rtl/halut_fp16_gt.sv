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
// Purely combinational.
module halut_fp16_gt (
  input  logic [15:0] a_i,
  input  logic [15:0] b_i,
  output logic        gt_o
);

  logic        a_sign, b_sign;
  logic [14:0] a_mag, b_mag;
  logic        a_nan, b_nan, both_zero;

  assign a_sign    = a_i[15];
  assign b_sign    = b_i[15];
  assign a_mag     = a_i[14:0];
  assign b_mag     = b_i[14:0];
  assign a_nan     = (a_i[14:10] == 5'h1F) && (a_i[9:0] != 10'd0);
  assign b_nan     = (b_i[14:10] == 5'h1F) && (b_i[9:0] != 10'd0);
  assign both_zero = (a_mag == 15'd0) && (b_mag == 15'd0);

  always_comb begin
    if (a_nan || b_nan || both_zero) begin
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
