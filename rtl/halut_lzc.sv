// Leading-zero counter (after PULP's common_cells `lzc` in leading-zero mode): the number of
// zero bits above the most significant set bit of in_i.
//
//   cnt_o   : leading zeros of in_i, 0..Width; Width when in_i is all zeros
//   empty_o : in_i is all zeros
//
// Shared by the fp units: halut_fp16_to_fp32 normalises a subnormal binary16 fraction with it
// (Width 10) and halut_fp32_add's near path normalises the significand difference
// (Width 25). Written as a
// priority scan from the LSB up (the last set bit seen is the leading one); synthesis builds
// the priority tree from it. Purely combinational.
module halut_lzc #(
  parameter  int unsigned Width = 2,
  localparam int unsigned CntW  = $clog2(Width + 1)  // holds 0..Width
) (
  input  logic [Width-1:0] in_i,
  output logic [CntW-1:0]  cnt_o,
  output logic             empty_o
);

  if (Width < 1) begin : g_bad_width
    $error("halut_lzc: parameter Width must be at least 1");
  end

  always_comb begin
    cnt_o = CntW'(Width);
    for (int unsigned i = 0; i < Width; i++) begin
      if (in_i[i]) begin
        cnt_o = CntW'(Width - 1 - i);
      end
    end
  end

  assign empty_o = (in_i == '0);

endmodule
