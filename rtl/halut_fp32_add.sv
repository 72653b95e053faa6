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
// Datapath: magnitude swap so |x| >= |y|, classification of x and y (halut_fp_classify),
// alignment of y with guard, round and sticky bits, add or subtract of the 24-bit
// significands, normalisation (right by one on carry, left by the leading-zero count of
// halut_lzc but never below the subnormal exponent), rounding, and the carry of the
// rounding into the exponent.
module halut_fp32_add (
  input  logic [halut_pkg::Fp32W-1:0] a_i,
  input  logic [halut_pkg::Fp32W-1:0] b_i,
  output logic [halut_pkg::Fp32W-1:0] sum_o
);

  localparam int unsigned W    = halut_pkg::Fp32W;
  localparam int unsigned ExpW = halut_pkg::Fp32ExpW;
  localparam int unsigned ManW = halut_pkg::Fp32ManW;
  localparam int unsigned SigW = ManW + 1;    // significand with the hidden bit (24)
  localparam int unsigned ExtW = SigW + 3;    // + guard, round, sticky (27)
  localparam int unsigned EW   = ExpW + 2;    // exponent arithmetic without overflow (10)
  localparam int unsigned LzW  = $clog2(ExtW + 1); // halut_lzc's count width (5)
  localparam int unsigned ExpMax = (1 << ExpW) - 1; // all-ones exponent field (255)

  // ---- order by magnitude: x is the larger operand -------------------------------------
  logic [W-1:0] x, y;
  logic         swap;

  assign swap = b_i[W-2:0] > a_i[W-2:0];
  assign x    = swap ? b_i : a_i;
  assign y    = swap ? a_i : b_i;

  // ---- fields and classes ---------------------------------------------------------------
  logic            x_sign, y_sign, sub;
  logic [ExpW-1:0] x_exp_f, y_exp_f; // exponent fields
  logic [ManW-1:0] x_man, y_man;     // mantissa (fraction) fields
  logic            x_zero, x_sub, x_inf, x_nan;
  logic            y_zero, y_sub, y_inf, y_nan;
  // classes the adder does not need (Verilator ignores *unused* signals)
  logic            unused_x_normal, unused_x_snan, unused_x_qnan;
  logic            unused_y_normal, unused_y_snan, unused_y_qnan;

  assign x_sign  = x[W-1];
  assign y_sign  = y[W-1];
  assign x_exp_f = x[ManW +: ExpW];
  assign y_exp_f = y[ManW +: ExpW];
  assign x_man   = x[ManW-1:0];
  assign y_man   = y[ManW-1:0];
  assign sub     = x_sign ^ y_sign;

  halut_fp_classify #(
    .ExpW(ExpW),
    .ManW(ManW)
  ) u_class_x (
    .op_i           (x),
    .is_normal_o    (unused_x_normal),
    .is_subnormal_o (x_sub),
    .is_zero_o      (x_zero),
    .is_inf_o       (x_inf),
    .is_nan_o       (x_nan),
    .is_signalling_o(unused_x_snan),
    .is_quiet_o     (unused_x_qnan)
  );

  halut_fp_classify #(
    .ExpW(ExpW),
    .ManW(ManW)
  ) u_class_y (
    .op_i           (y),
    .is_normal_o    (unused_y_normal),
    .is_subnormal_o (y_sub),
    .is_zero_o      (y_zero),
    .is_inf_o       (y_inf),
    .is_nan_o       (y_nan),
    .is_signalling_o(unused_y_snan),
    .is_quiet_o     (unused_y_qnan)
  );

  // effective exponents (a subnormal or zero counts as exponent 1) and significands with
  // the hidden bit (0 for a subnormal or zero)
  logic [ExpW-1:0] x_exp, y_exp;
  logic [SigW-1:0] x_sig, y_sig;
  logic            x_tiny, y_tiny;   // exponent field 0

  assign x_tiny = x_zero || x_sub;
  assign y_tiny = y_zero || y_sub;
  assign x_exp  = x_tiny ? ExpW'(1) : x_exp_f;
  assign y_exp  = y_tiny ? ExpW'(1) : y_exp_f;
  assign x_sig  = {!x_tiny, x_man};
  assign y_sig  = {!y_tiny, y_man};

  // ---- align y: 24 significand bits + guard, round, sticky -----------------------------
  logic [ExpW-1:0] diff;
  logic [ExtW-1:0] y_ext, y_shr;
  logic            y_sticky;
  logic [ExtW-1:0] y_al, x_al;

  assign diff     = x_exp - y_exp;
  assign y_ext    = {y_sig, 3'b000};
  assign y_shr    = y_ext >> diff;
  assign y_sticky = (y_shr << diff) != y_ext; // a set bit was shifted out
  assign y_al     = {y_shr[ExtW-1:1], y_shr[0] | y_sticky};
  assign x_al     = {x_sig, 3'b000};

  // ---- add or subtract (x_al >= y_al, so the difference is not negative) ---------------
  logic [ExtW:0] raw; // bit ExtW: carry out of the addition

  assign raw = sub ? ({1'b0, x_al} - {1'b0, y_al}) : ({1'b0, x_al} + {1'b0, y_al});

  // ---- normalise ----------------------------------------------------------------------
  // lz: leading zeros of raw[ExtW-1:0] (ExtW when it is 0)
  logic [LzW-1:0] lz;
  logic           raw_low_zero; // raw[ExtW-1:0] == 0

  halut_lzc #(
    .Width(ExtW)
  ) u_lzc (
    .in_i   (raw[ExtW-1:0]),
    .cnt_o  (lz),
    .empty_o(raw_low_zero)
  );

  logic [EW-1:0]   exp_n;   // exponent after normalisation (1 with a zero hidden bit: subnormal)
  logic [ExtW-1:0] sig_n;   // hidden bit at 26, fraction 25:3, guard 2, round 1, sticky 0
  logic [EW-1:0]   lshift;
  logic [EW-1:0]   x_exp_w; // x_exp widened for the exponent arithmetic

  assign x_exp_w = EW'(x_exp);

  always_comb begin
    lshift = '0;
    if (raw[ExtW]) begin
      // carry out: shift right by one, the dropped bit joins the sticky bit
      exp_n = x_exp_w + 1'b1;
      sig_n = {raw[ExtW:2], raw[1] | raw[0]};
    end else begin
      // shift left by the leading zeros, but not below exponent 1 (subnormal range)
      if (EW'(lz) < x_exp_w - 1'b1) begin
        lshift = EW'(lz);
      end else begin
        lshift = x_exp_w - 1'b1;
      end
      exp_n = x_exp_w - lshift;
      sig_n = raw[ExtW-1:0] << lshift;
    end
  end

  // ---- round to nearest, ties to even ---------------------------------------------------
  logic            round_up;
  logic [SigW:0]   sig_r;   // rounded significand, bit SigW set on a rounding carry
  logic [EW-1:0]   exp_r;
  logic [ManW-1:0] frac_r;
  logic [ExpW-1:0] exp_field;

  // guard && (round || sticky || lsb of the kept significand)
  assign round_up = sig_n[2] && (sig_n[1] || sig_n[0] || sig_n[3]);
  assign sig_r    = {1'b0, sig_n[ExtW-1:3]} + {{SigW{1'b0}}, round_up};

  always_comb begin
    if (sig_r[SigW]) begin
      exp_r  = exp_n + 1'b1;
      frac_r = sig_r[SigW-1:1]; // sig_r is 1000...0 here: the fraction is zero
    end else begin
      exp_r  = exp_n;
      frac_r = sig_r[ManW-1:0];
    end
  end

  // the hidden bit decides normal versus subnormal (exponent field 0 at exponent 1)
  assign exp_field = (sig_r[SigW] || sig_r[ManW]) ? exp_r[ExpW-1:0] : '0;

  // ---- result selection -------------------------------------------------------------------
  // (x, y) is (a, b) or (b, a), so the NaN and inf tests are symmetric; an inf operand is
  // the larger magnitude, so "the inf operand" is x (and for inf + inf of one sign, x == y).
  always_comb begin
    if (x_nan || y_nan || (x_inf && y_inf && sub)) begin
      sum_o = halut_pkg::Fp32QNaN;
    end else if (x_inf) begin
      sum_o = x;
    end else if (!raw[ExtW] && raw_low_zero) begin
      // exact zero: +0 unless both operands are zeros of negative sign
      sum_o = {x_sign & y_sign, {(W - 1){1'b0}}};
    end else if (exp_r >= EW'(ExpMax)) begin
      sum_o = {x_sign, {ExpW{1'b1}}, {ManW{1'b0}}};
    end else begin
      sum_o = {x_sign, exp_field, frac_r};
    end
  end

endmodule
