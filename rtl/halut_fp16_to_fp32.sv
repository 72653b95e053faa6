// IEEE 754-2008 conversion binary16 -> binary32 (convertFormat), exact.
//
// IEEE rules implemented:
//   * every binary16 value is exactly representable in binary32: no rounding happens,
//   * signed zeros keep their sign,
//   * subnormal inputs (exponent field 0, fraction != 0) are normalised: value
//     frac * 2^-24 becomes a normal binary32 with exponent 103 + msb(frac),
//   * infinities stay infinities of the same sign,
//   * NaN: the result is a quiet NaN that keeps the sign and the 9 low payload bits
//     (fraction bit 9, the quiet bit, is forced to 1), i.e. {s, 8'hFF, 1, frac[8:0], 13'b0},
//     as x86 F16C's vcvtph2ps does. LUT entries are finite (checked on the host), so this
//     only documents what happens anyway.
// Purely combinational.
module halut_fp16_to_fp32 (
  input  logic [15:0] h_i,
  output logic [31:0] f_o
);

  logic       sign;
  logic [4:0] exp16;
  logic [9:0] frac16;
  logic [3:0] msb;      // position of the leading one of a subnormal fraction
  logic [9:0] sub_frac; // the subnormal fraction shifted so its leading one drops out

  assign sign   = h_i[15];
  assign exp16  = h_i[14:10];
  assign frac16 = h_i[9:0];

  // priority encoder: highest set bit of the fraction (0 when the fraction is 0)
  always_comb begin
    msb = 4'd0;
    for (int unsigned i = 0; i < 10; i++) begin
      if (frac16[i]) begin
        msb = 4'(i);
      end
    end
  end

  assign sub_frac = frac16 << (4'd10 - msb);

  always_comb begin
    if (exp16 == 5'd0) begin
      if (frac16 == 10'd0) begin
        f_o = {sign, 31'd0};
      end else begin
        f_o = {sign, 8'd103 + {4'd0, msb}, sub_frac, 13'd0};
      end
    end else if (exp16 == 5'h1F) begin
      if (frac16 == 10'd0) begin
        f_o = {sign, 8'hFF, 23'd0};
      end else begin
        f_o = {sign, 8'hFF, 1'b1, frac16[8:0], 13'd0};
      end
    end else begin
      // normal: rebias 15 -> 127
      f_o = {sign, {3'd0, exp16} + 8'd112, frac16, 13'd0};
    end
  end

endmodule
