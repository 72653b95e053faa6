// Feature-versus-threshold comparison of one tree level: bit = f > t in the threshold
// format. ThrFmt 0: IEEE binary16 (halut_fp16_gt: -0 == +0, subnormals exact, NaN
// unordered); ThrFmt 1: two's complement int8 (signed order).
module halut_thr_gt #(
  parameter int unsigned ThrFmt = 0,
  localparam int unsigned FeatW = (ThrFmt == 0) ? 16 : 8
) (
  input  logic [FeatW-1:0] f_i,
  input  logic [FeatW-1:0] t_i,
  output logic             gt_o
);

  if (ThrFmt == 0) begin : g_fp16
    halut_fp16_gt u_gt (
      .a_i (f_i),
      .b_i (t_i),
      .gt_o(gt_o)
    );
  end else begin : g_int8
    assign gt_o = $signed(f_i) > $signed(t_i);
  end

endmodule
