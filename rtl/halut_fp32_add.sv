// IEEE 754-2008 binary32 addition (addition), single cycle, purely combinational.
//
// IEEE rules implemented:
//   * the exact sum rounded once, to nearest, ties to even (roundTiesToEven),
//   * subnormal inputs are used as they are and subnormal results are delivered (gradual
//     underflow, no flush to zero),
//   * an exact zero sum of operands of opposite sign (x + -x, or +0 + -0) is +0; the sum
//     of two zeros of the same sign keeps that sign (-0 + -0 = -0),
//   * overflow (the rounded result exceeds the largest finite value) gives inf with the
//     sign of the exact sum,
//   * inf + finite = that inf; inf + inf (same sign) = that inf,
//   * invalid operation inf + -inf returns the canonical quiet NaN 0x7FC00000,
//   * a NaN operand (quiet or signalling) returns the canonical quiet NaN 0x7FC00000 (the
//     payload is not propagated; IEEE leaves the payload choice to the implementation).
// No exception flags are produced.
//
// Datapath: magnitude swap so |x| >= |y|, alignment of y with guard, round and sticky bits,
// add or subtract of the 24-bit significands, normalisation (right by one on carry, left
// by the leading-zero count but never below the subnormal exponent), rounding, and the
// carry of the rounding into the exponent.
module halut_fp32_add (
  input  logic [31:0] a_i,
  input  logic [31:0] b_i,
  output logic [31:0] sum_o
);


  // ---- unpack and classify -------------------------------------------------------------
  logic a_nan, b_nan, a_inf, b_inf;

  assign a_nan = (a_i[30:23] == 8'hFF) && (a_i[22:0] != 23'd0);
  assign b_nan = (b_i[30:23] == 8'hFF) && (b_i[22:0] != 23'd0);
  assign a_inf = (a_i[30:23] == 8'hFF) && (a_i[22:0] == 23'd0);
  assign b_inf = (b_i[30:23] == 8'hFF) && (b_i[22:0] == 23'd0);

  // ---- order by magnitude: x is the larger operand -------------------------------------
  logic [31:0] x, y;
  logic        swap;

  assign swap = b_i[30:0] > a_i[30:0];
  assign x    = swap ? b_i : a_i;
  assign y    = swap ? a_i : b_i;

  logic       x_sign, y_sign, sub;
  logic [7:0] x_exp, y_exp; // effective exponents: a subnormal counts as exponent 1
  logic [23:0] x_sig, y_sig; // significands with the hidden bit

  assign x_sign = x[31];
  assign y_sign = y[31];
  assign sub    = x_sign ^ y_sign;
  assign x_exp  = (x[30:23] == 8'd0) ? 8'd1 : x[30:23];
  assign y_exp  = (y[30:23] == 8'd0) ? 8'd1 : y[30:23];
  assign x_sig  = {x[30:23] != 8'd0, x[22:0]};
  assign y_sig  = {y[30:23] != 8'd0, y[22:0]};

  // ---- align y: 24 significand bits + guard, round, sticky -----------------------------
  logic [7:0]  diff;
  logic [26:0] y_ext, y_shr;
  logic        y_sticky;
  logic [26:0] y_al, x_al;

  assign diff     = x_exp - y_exp;
  assign y_ext    = {y_sig, 3'b000};
  assign y_shr    = y_ext >> diff;
  assign y_sticky = (y_shr << diff) != y_ext; // a set bit was shifted out
  assign y_al     = {y_shr[26:1], y_shr[0] | y_sticky};
  assign x_al     = {x_sig, 3'b000};

  // ---- add or subtract (x_al >= y_al, so the difference is not negative) ---------------
  logic [27:0] raw;

  assign raw = sub ? ({1'b0, x_al} - {1'b0, y_al}) : ({1'b0, x_al} + {1'b0, y_al});

  // ---- normalise ----------------------------------------------------------------------
  // lz: leading zeros of raw[26:0] (27 when raw[26:0] == 0)
  logic [4:0] lz;

  always_comb begin
    lz = 5'd27;
    for (int i = 0; i < 27; i++) begin
      if (raw[i]) begin
        lz = 5'(26 - i);
      end
    end
  end

  logic [9:0]  exp_n;   // exponent after normalisation (1 with a zero hidden bit: subnormal)
  logic [26:0] sig_n;   // hidden bit at 26, fraction 25:3, guard 2, round 1, sticky 0
  logic [9:0]  lshift;

  always_comb begin
    lshift = 10'd0;
    if (raw[27]) begin
      // carry out: shift right by one, the dropped bit joins the sticky bit
      exp_n = {2'd0, x_exp} + 10'd1;
      sig_n = {raw[27:2], raw[1] | raw[0]};
    end else begin
      // shift left by the leading zeros, but not below exponent 1 (subnormal range)
      if ({5'd0, lz} < {2'd0, x_exp} - 10'd1) begin
        lshift = {5'd0, lz};
      end else begin
        lshift = {2'd0, x_exp} - 10'd1;
      end
      exp_n = {2'd0, x_exp} - lshift;
      sig_n = raw[26:0] << lshift;
    end
  end

  // ---- round to nearest, ties to even ---------------------------------------------------
  logic        round_up;
  logic [24:0] sig_r;   // rounded significand, bit 24 set on a rounding carry
  logic [9:0]  exp_r;
  logic [22:0] frac_r;
  logic [7:0]  exp_field;

  assign round_up = sig_n[2] && (sig_n[1] || sig_n[0] || sig_n[3]);
  assign sig_r    = {1'b0, sig_n[26:3]} + {24'd0, round_up};

  always_comb begin
    if (sig_r[24]) begin
      exp_r  = exp_n + 10'd1;
      frac_r = sig_r[23:1]; // sig_r is 1000...0 here: the fraction is zero
    end else begin
      exp_r  = exp_n;
      frac_r = sig_r[22:0];
    end
  end

  // the hidden bit decides normal versus subnormal (exponent field 0 at exponent 1)
  assign exp_field = (sig_r[24] || sig_r[23]) ? exp_r[7:0] : 8'd0;

  // ---- result selection -------------------------------------------------------------------
  always_comb begin
    if (a_nan || b_nan || (a_inf && b_inf && (a_i[31] != b_i[31]))) begin
      sum_o = halut_pkg::Fp32QNaN;
    end else if (a_inf) begin
      sum_o = a_i;
    end else if (b_inf) begin
      sum_o = b_i;
    end else if (raw == 28'd0) begin
      // exact zero: +0 unless both operands are zeros of negative sign
      sum_o = {a_i[31] & b_i[31], 31'd0};
    end else if (exp_r >= 10'd255) begin
      sum_o = {x_sign, 8'hFF, 23'd0};
    end else begin
      sum_o = {x_sign, exp_field, frac_r};
    end
  end

endmodule
