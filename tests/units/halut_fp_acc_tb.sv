// Test wrapper: one fp16-LUT column of halut_accel at its pipeline depth, with the
// accelerator's own halut_fp16_acc between the same two registers (tests/test_rtl_fp_acc.py).
//
//   cycle t   : LUT-read stage: lut_i (an fp16 entry, when valid_i) is converted and packed
//               (halut_fp16_acc.val_o) into val_q; start_i / start_val_i travel beside it
//   cycle t+1 : accumulation stage: acc_q <= (start ? start_val : acc_q) + val_q, as the
//               accelerator's accumulator does (start: a row's first codebook, from +0 or from
//               its preload)
//   acc_o     : acc_q, i.e. the running sum including the entry of cycle t from cycle t+2 on
module halut_fp_acc_tb (
  input  logic        clk_i,
  input  logic        rst_ni,
  input  logic        valid_i,
  input  logic        start_i,
  input  logic [31:0] start_val_i,
  input  logic [15:0] lut_i,
  output logic [31:0] acc_o
);

  localparam int unsigned ValW = halut_pkg::Fp32W - 1 - (halut_pkg::Fp32ManW -
                                                          halut_pkg::Fp16ManW);

  logic [ValW-1:0] val_d, val_q;
  logic            v_q, start_q;
  logic [31:0]     start_val_q, base, sum, acc_q;

  halut_fp16_acc u_acc (
    .lut_i(lut_i),
    .val_o(val_d),
    .acc_i(base),
    .val_i(val_q),
    .sum_o(sum)
  );

  assign base = start_q ? start_val_q : acc_q;

  always_ff @(posedge clk_i or negedge rst_ni) begin
    if (!rst_ni) begin
      v_q         <= 1'b0;
      start_q     <= 1'b0;
      start_val_q <= '0;
      val_q       <= '0;
      acc_q       <= '0;
    end else begin
      v_q         <= valid_i;
      start_q     <= start_i;
      start_val_q <= start_val_i;
      val_q       <= val_d;
      if (v_q) begin
        acc_q <= sum;
      end
    end
  end

  assign acc_o = acc_q;

endmodule
