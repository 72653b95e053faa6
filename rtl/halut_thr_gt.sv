// Feature-versus-threshold comparison of one tree level: bit = f > t in the threshold
// format. ThrFmtFp16: IEEE binary16 (halut_fp16_gt: -0 == +0, subnormals exact, NaN
// unordered); ThrFmtInt8: two's complement int8 (signed order).
module halut_thr_gt #(
  parameter  halut_pkg::thr_fmt_e ThrFmt = halut_pkg::ThrFmtFp16,
  localparam int unsigned         FeatW  = (ThrFmt == halut_pkg::ThrFmtFp16) ?
                                           halut_pkg::Fp16W : 8
) (
  input  logic [FeatW-1:0] f_i,
  input  logic [FeatW-1:0] t_i,
  output logic             gt_o
);

  if (ThrFmt == halut_pkg::ThrFmtFp16) begin : g_fp16
    halut_fp16_gt u_gt (
      .a_i (f_i),
      .b_i (t_i),
      .gt_o(gt_o)
    );
  end else begin : g_int8
    assign gt_o = $signed(f_i) > $signed(t_i);
  end

endmodule
