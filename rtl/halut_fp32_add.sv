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
// Datapath: a near/far ("two-path") adder, so that no sum goes through both a long
// alignment shift and a long normalisation shift. The operands are ordered by exponent
// only (x has the larger effective exponent, diff = ex - ey; two 8-bit subtractions side by
// side, no 31-bit magnitude compare in front), classified by halut_fp_classify, then:
//   * far path (an effective addition, or a subtraction with diff >= 2, or diff = 1 without
//     cancellation of the leading bit): y aligned right by diff with guard, round and sticky
//     bits (the sticky bit from a mask decoded from diff, beside the shifter, not after it),
//     one add or subtract of the 27-bit extended significands, a normalisation by at most
//     one bit (right on a carry, left when a subtraction clears the leading bit), round to
//     nearest even, the rounding carry into the exponent, overflow to inf;
//   * near path (an effective subtraction with diff 0 or 1, leading bit cancelled): the
//     result is exact (no rounding), possibly with massive cancellation: both differences
//     x - y and y - x side by side (with equal exponents either can be the larger), the
//     leading-zero count of the non-negative one (halut_lzc), a left shift by it but never
//     below the subnormal exponent; x - x gives +0.
// The far path holds the alignment shifter, the near path the normalisation shifter; the
// path is selected at the end. docs/rtl.md has the timing this buys.
module halut_fp32_add (
  input  logic [halut_pkg::Fp32W-1:0] a_i,
  input  logic [halut_pkg::Fp32W-1:0] b_i,
  output logic [halut_pkg::Fp32W-1:0] sum_o
);

  localparam int unsigned W      = halut_pkg::Fp32W;
  localparam int unsigned ExpW   = halut_pkg::Fp32ExpW;
  localparam int unsigned ManW   = halut_pkg::Fp32ManW;
  localparam int unsigned SigW   = ManW + 1;          // significand with the hidden bit (24)
  localparam int unsigned ExtW   = SigW + 3;          // + guard, round, sticky (27)
  localparam int unsigned NearW  = SigW + 1;          // near path: one bit below the lsb (25)
  localparam int unsigned EW     = ExpW + 2;          // exponent arithmetic without overflow
  localparam int unsigned ShW    = $clog2(ExtW + 1);  // alignment shifts that keep a bit (5)
  localparam int unsigned LzW    = $clog2(NearW + 1); // halut_lzc's count width (5)
  localparam int unsigned ExpMax = (1 << ExpW) - 1;   // all-ones exponent field (255)

  // ---- fields and classes of a and b ------------------------------------------------------
  logic            a_zero, a_sub, a_inf, a_nan;
  logic            b_zero, b_sub, b_inf, b_nan;
  // classes the adder does not need (Verilator ignores *unused* signals)
  logic            unused_a_normal, unused_a_snan, unused_a_qnan;
  logic            unused_b_normal, unused_b_snan, unused_b_qnan;

  halut_fp_classify #(
    .ExpW(ExpW),
    .ManW(ManW)
  ) u_class_a (
    .op_i           (a_i),
    .is_normal_o    (unused_a_normal),
    .is_subnormal_o (a_sub),
    .is_zero_o      (a_zero),
    .is_inf_o       (a_inf),
    .is_nan_o       (a_nan),
    .is_signalling_o(unused_a_snan),
    .is_quiet_o     (unused_a_qnan)
  );

  halut_fp_classify #(
    .ExpW(ExpW),
    .ManW(ManW)
  ) u_class_b (
    .op_i           (b_i),
    .is_normal_o    (unused_b_normal),
    .is_subnormal_o (b_sub),
    .is_zero_o      (b_zero),
    .is_inf_o       (b_inf),
    .is_nan_o       (b_nan),
    .is_signalling_o(unused_b_snan),
    .is_quiet_o     (unused_b_qnan)
  );

  // effective exponents (a subnormal or zero counts as exponent 1) and significands with
  // the hidden bit (0 for a subnormal or zero)
  logic            a_tiny, b_tiny;   // exponent field 0
  logic [ExpW-1:0] a_exp, b_exp;
  logic [SigW-1:0] a_sig, b_sig;

  assign a_tiny = a_zero || a_sub;
  assign b_tiny = b_zero || b_sub;
  assign a_exp  = a_tiny ? ExpW'(1) : a_i[ManW +: ExpW];
  assign b_exp  = b_tiny ? ExpW'(1) : b_i[ManW +: ExpW];
  assign a_sig  = {!a_tiny, a_i[ManW-1:0]};
  assign b_sig  = {!b_tiny, b_i[ManW-1:0]};

  // ---- order by exponent: x has the larger (with equal exponents x = a) -------------------
  logic [ExpW-1:0] d_ab, d_ba;       // ea - eb, eb - ea (mod 2^ExpW)
  logic            a_ge;             // ea >= eb
  logic            unused_b_ge;      // eb >= ea (a_ge decides)
  logic [ExpW-1:0] diff;             // ex - ey
  logic            x_sign, y_sign, sub;
  logic [ExpW-1:0] x_exp;
  logic [SigW-1:0] x_sig, y_sig;
  logic [W-1:0]    x;

  // a - b = a + ~b + 1: the carry out is "no borrow", a >= b
  halut_pfx_add #(
    .Width(ExpW)
  ) u_d_ab (
    .a_i  (a_exp),
    .b_i  (~b_exp),
    .ci_i (1'b1),
    .sum_o(d_ab),
    .co_o (a_ge)
  );

  halut_pfx_add #(
    .Width(ExpW)
  ) u_d_ba (
    .a_i  (b_exp),
    .b_i  (~a_exp),
    .ci_i (1'b1),
    .sum_o(d_ba),
    .co_o (unused_b_ge)
  );

  assign diff   = a_ge ? d_ab : d_ba;
  assign x      = a_ge ? a_i : b_i;
  assign x_sign = a_ge ? a_i[W-1] : b_i[W-1];
  assign y_sign = a_ge ? b_i[W-1] : a_i[W-1];
  assign x_exp  = a_ge ? a_exp : b_exp;
  assign x_sig  = a_ge ? a_sig : b_sig;
  assign y_sig  = a_ge ? b_sig : a_sig;
  assign sub    = a_i[W-1] ^ b_i[W-1];

  // =========================================================================================
  // near path: subtraction with diff 0 or 1, exact
  // =========================================================================================
  // in units of half an ulp of x: X = x_sig * 2, Y = y_sig * 2 (diff 0) or y_sig (diff 1)
  logic [NearW-1:0] near_x, near_y, near_r;
  logic [NearW-1:0] near_p, near_q;  // X - Y, Y - X (mod 2^NearW)
  logic             near_ge;         // X >= Y
  logic             near_neg;        // Y > X (only with diff 0)
  logic             near_sign;
  logic             unused_near_le;  // Y >= X (near_ge decides)

  assign near_x   = {x_sig, 1'b0};
  assign near_y   = diff[0] ? {1'b0, y_sig} : {y_sig, 1'b0};

  halut_pfx_add #(
    .Width(NearW)
  ) u_near_p (
    .a_i  (near_x),
    .b_i  (~near_y),
    .ci_i (1'b1),
    .sum_o(near_p),
    .co_o (near_ge)
  );

  halut_pfx_add #(
    .Width(NearW)
  ) u_near_q (
    .a_i  (near_y),
    .b_i  (~near_x),
    .ci_i (1'b1),
    .sum_o(near_q),
    .co_o (unused_near_le)
  );

  assign near_neg = !near_ge;
  assign near_r   = near_neg ? near_q : near_p;

  // normalise: shift left by the leading zeros, but not below exponent 1 (subnormal range).
  // With diff 0, near_r[0] is 0; with diff 1 the path is taken only when near_r[NearW-1] is
  // 0, so the shift is at least 1: no set bit is dropped by near_n[NearW-1:1] below.
  logic [LzW-1:0]   near_lz;
  logic             near_zero;       // X == Y: exact cancellation
  logic [EW-1:0]    near_sh;
  logic [ExpW-1:0]  near_e;          // at most x_exp: no overflow
  logic [NearW-1:0] near_n;
  logic [EW-1:0]    x_exp_w;         // x_exp widened for the exponent arithmetic

  halut_lzc #(
    .Width(NearW)
  ) u_lzc (
    .in_i   (near_r),
    .cnt_o  (near_lz),
    .empty_o(near_zero)
  );

  assign x_exp_w   = EW'(x_exp);
  assign near_sh   = (EW'(near_lz) < x_exp_w - 1'b1) ? EW'(near_lz) : x_exp_w - 1'b1;
  assign near_e    = x_exp - near_sh[ExpW-1:0];
  assign near_n    = near_r << near_sh;
  // the sign of the larger magnitude; x - x is +0 (round to nearest)
  assign near_sign = !near_zero && (near_neg ? y_sign : x_sign);

  logic [W-1:0] near_res;
  assign near_res = {near_sign, near_n[NearW-1] ? near_e : ExpW'(0),
                     near_n[NearW-2:1]};

  // =========================================================================================
  // far path: addition, or subtraction whose result keeps its leading bit or loses one
  // =========================================================================================
  // align y: 24 significand bits + guard, round, sticky. Shifts of ExtW or more leave only
  // the sticky bit; the sticky bit is y's bits below the shift, from a mask of diff.
  logic            far_big;          // diff >= 32: every bit of y goes into the sticky bit
  logic [ExtW-1:0] y_ext, y_shr, lo_mask, y_al, x_al;
  logic            y_sticky;

  assign far_big  = |diff[ExpW-1:ShW];
  assign y_ext    = {y_sig, 3'b000};
  assign y_shr    = far_big ? '0 : y_ext >> diff[ShW-1:0];
  assign lo_mask  = far_big ? '1 : ~({ExtW{1'b1}} << diff[ShW-1:0]);
  assign y_sticky = |(y_ext & lo_mask);
  assign y_al     = {y_shr[ExtW-1:1], y_shr[0] | y_sticky};
  assign x_al     = {x_sig, 3'b000};

  // add or subtract (x_al + ~y_al + 1; when the far path is taken for a subtraction,
  // x_al > y_al, so the carry out, "no borrow", is 1 and is not part of the result)
  logic [ExtW:0]   far_raw;          // bit ExtW: carry out of the addition
  logic            far_co;

  halut_pfx_add #(
    .Width(ExtW)
  ) u_far (
    .a_i  (x_al),
    .b_i  (y_al ^ {ExtW{sub}}),
    .ci_i (sub),
    .sum_o(far_raw[ExtW-1:0]),
    .co_o (far_co)
  );

  assign far_raw[ExtW] = far_co && !sub;

  // normalise by at most one bit: right on a carry (the dropped bit joins the sticky bit),
  // left when a subtraction cleared the leading bit (then diff >= 2, so x_exp >= 3: the
  // exponent stays normal). A sum of subnormals without carry stays at exponent 1.
  logic [ExtW-1:0] far_n;            // hidden bit at 26, fraction 25:3, guard 2, round 1, sticky 0
  logic            far_right, far_left;

  assign far_right = far_raw[ExtW];
  assign far_left  = sub && !far_raw[ExtW-1];

  always_comb begin
    if (far_right) begin
      far_n = {far_raw[ExtW:2], far_raw[1] | far_raw[0]};
    end else if (far_left) begin
      far_n = {far_raw[ExtW-2:0], 1'b0};
    end else begin
      far_n = far_raw[ExtW-1:0];
    end
  end

  // round to nearest, ties to even: guard && (round || sticky || lsb of the kept significand)
  logic            round_up;
  logic [SigW-1:0] sig_r;            // rounded significand
  logic            round_co;         // rounding carry: sig_r is 0 (the value 2^SigW)
  logic [ManW-1:0] frac_r;

  assign round_up = far_n[2] && (far_n[1] || far_n[0] || far_n[3]);

  halut_pfx_add #(
    .Width(SigW)
  ) u_round (
    .a_i  (far_n[ExtW-1:3]),
    .b_i  ('0),
    .ci_i (round_up),
    .sum_o(sig_r),
    .co_o (round_co)
  );

  // after a rounding carry the fraction is zero (sig_r is 0 and the carry is the hidden bit)
  assign frac_r = sig_r[ManW-1:0];

  // the exponent: x's, +1 on a carry, -1 on a left shift, +1 on a rounding carry. The four
  // candidates and their overflow tests depend on x_exp only, so they are ready long before
  // the sum and the rounding, which only select one.
  logic [EW-1:0]   exp_m1, exp_p1, exp_p2, exp_r;
  logic            ovf_0, ovf_p1, ovf_p2, far_ovf;
  logic [ExpW-1:0] exp_field;
  logic            unused_exp_r_hi;  // exp_r's top bits: only far_ovf (from the candidates)

  assign unused_exp_r_hi = ^exp_r[EW-1:ExpW];

  assign exp_m1 = x_exp_w - 1'b1;
  assign exp_p1 = x_exp_w + 1'b1;
  assign exp_p2 = x_exp_w + EW'(2);
  assign ovf_0  = x_exp_w >= EW'(ExpMax);
  assign ovf_p1 = exp_p1 >= EW'(ExpMax);
  assign ovf_p2 = exp_p2 >= EW'(ExpMax);

  always_comb begin
    if (far_right) begin
      exp_r   = round_co ? exp_p2 : exp_p1;
      far_ovf = round_co ? ovf_p2 : ovf_p1;
    end else if (far_left) begin
      exp_r   = round_co ? x_exp_w : exp_m1;
      far_ovf = round_co && ovf_0;
    end else begin
      exp_r   = round_co ? exp_p1 : x_exp_w;
      far_ovf = round_co ? ovf_p1 : ovf_0;
    end
  end

  // the hidden bit decides normal versus subnormal (exponent field 0 at exponent 1); two
  // zeros of one sign add to that zero here (far_raw is 0)
  assign exp_field = (round_co || sig_r[ManW]) ? exp_r[ExpW-1:0] : '0;

  // =========================================================================================
  // result selection
  // =========================================================================================
  // the near path: a subtraction with diff 0, or diff 1 when the leading bit cancels
  logic use_near;
  assign use_near = sub && ((diff == '0) || ((diff == ExpW'(1)) && !near_p[NearW-1]));

  // An inf operand has the largest exponent, so it is x (for inf + inf of one sign x is
  // either). x is finite when the near or far result is used: neither overflows on the near
  // path (its exponent is at most x's).
  always_comb begin
    if (a_nan || b_nan || (a_inf && b_inf && sub)) begin
      sum_o = halut_pkg::Fp32QNaN;
    end else if (a_inf || b_inf) begin
      sum_o = x;
    end else if (use_near) begin
      sum_o = near_res;
    end else if (far_ovf) begin
      sum_o = {x_sign, {ExpW{1'b1}}, {ManW{1'b0}}};
    end else begin
      sum_o = {x_sign, exp_field, frac_r};
    end
  end

endmodule
