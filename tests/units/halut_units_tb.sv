// Test wrapper: every arithmetic unit of rtl/ side by side on the same two operand words,
// so one Verilator build and one run check them all (tests/test_rtl_units.py).
//   cvt_o  : halut_fp16_to_fp32(a[15:0])
//   gt16_o : halut_fp16_gt(a[15:0], b[15:0])
//   gti8_o : halut_thr_gt #(ThrFmt=1)(a[7:0], b[7:0])   (int8 signed order)
//   add_o  : halut_fp32_add(a, b)
//   acc_o  : halut_int8_acc(a, b[7:0])
module halut_units_tb (
  input  logic [31:0] a_i,
  input  logic [31:0] b_i,
  output logic [31:0] cvt_o,
  output logic        gt16_o,
  output logic        gti8_o,
  output logic [31:0] add_o,
  output logic [31:0] acc_o
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

  halut_thr_gt #(.ThrFmt(1)) u_gti8 (
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

endmodule
