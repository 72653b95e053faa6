// Test wrapper: every arithmetic unit of rtl/ side by side on the same two operand words,
// so one Verilator build and one run check them all (tests/test_rtl_units.py).
//   cvt_o  : halut_fp16_to_fp32(a[15:0])
//   gt16_o : halut_fp16_gt(a[15:0], b[15:0])
//   gti8_o : halut_thr_gt #(ThrFmt=1)(a[7:0], b[7:0])   (int8 signed order)
//   add_o  : halut_fp32_add(a, b)
//   acc_o  : halut_int8_acc(a, b[7:0])
//   lzc_o  : halut_lzc of a[0], a[9:0], a[26:0], a[31:0] (Width 1, 10, 27, 32), one byte each
//            from the LSB: bit 7 empty_o, the low bits cnt_o
//   cls_o  : halut_fp_classify of a[15:0] as binary16 (bits 6:0) and of a as binary32 (bits
//            14:8), each {quiet, signalling, nan, inf, zero, subnormal, normal} from bit 6 down
module halut_units_tb (
  input  logic [31:0] a_i,
  input  logic [31:0] b_i,
  output logic [31:0] cvt_o,
  output logic        gt16_o,
  output logic        gti8_o,
  output logic [31:0] add_o,
  output logic [31:0] acc_o,
  output logic [31:0] lzc_o,
  output logic [15:0] cls_o
);

  halut_fp16_to_fp32 u_cvt (
    .h_i(a_i[15:0]),
    .f_o(cvt_o)
  );

  halut_fp16_gt u_gt16 (
    .a_i (a_i[15:0]),
    .b_i (b_i[15:0]),
    .gt_o(gt16_o)
  );

  halut_thr_gt #(.ThrFmt(halut_pkg::ThrFmtInt8)) u_gti8 (
    .f_i (a_i[7:0]),
    .t_i (b_i[7:0]),
    .gt_o(gti8_o)
  );

  halut_fp32_add u_add (
    .a_i  (a_i),
    .b_i  (b_i),
    .sum_o(add_o)
  );

  halut_int8_acc u_acc (
    .acc_i(a_i),
    .x_i  (b_i[7:0]),
    .sum_o(acc_o)
  );

  // ---- leading-zero counters ----------------------------------------------------------------
  logic       lz1;
  logic [3:0] lz10;
  logic [4:0] lz27;
  logic [5:0] lz32;
  logic       e1, e10, e27, e32;

  halut_lzc #(.Width(1)) u_lzc1 (
    .in_i   (a_i[0]),
    .cnt_o  (lz1),
    .empty_o(e1)
  );

  halut_lzc #(.Width(10)) u_lzc10 (
    .in_i   (a_i[9:0]),
    .cnt_o  (lz10),
    .empty_o(e10)
  );

  halut_lzc #(.Width(27)) u_lzc27 (
    .in_i   (a_i[26:0]),
    .cnt_o  (lz27),
    .empty_o(e27)
  );

  halut_lzc #(.Width(32)) u_lzc32 (
    .in_i   (a_i),
    .cnt_o  (lz32),
    .empty_o(e32)
  );

  assign lzc_o = {e32, 1'b0, lz32, e27, 2'b0, lz27, e10, 3'b0, lz10, e1, 6'b0, lz1};

  // ---- classifiers --------------------------------------------------------------------------
  logic [6:0] cls16, cls32;

  halut_fp_classify #(
    .ExpW(halut_pkg::Fp16ExpW),
    .ManW(halut_pkg::Fp16ManW)
  ) u_cls16 (
    .op_i           (a_i[15:0]),
    .is_normal_o    (cls16[0]),
    .is_subnormal_o (cls16[1]),
    .is_zero_o      (cls16[2]),
    .is_inf_o       (cls16[3]),
    .is_nan_o       (cls16[4]),
    .is_signalling_o(cls16[5]),
    .is_quiet_o     (cls16[6])
  );

  halut_fp_classify #(
    .ExpW(halut_pkg::Fp32ExpW),
    .ManW(halut_pkg::Fp32ManW)
  ) u_cls32 (
    .op_i           (a_i),
    .is_normal_o    (cls32[0]),
    .is_subnormal_o (cls32[1]),
    .is_zero_o      (cls32[2]),
    .is_inf_o       (cls32[3]),
    .is_nan_o       (cls32[4]),
    .is_signalling_o(cls32[5]),
    .is_quiet_o     (cls32[6])
  );

  assign cls_o = {1'b0, cls32, 1'b0, cls16};

endmodule
