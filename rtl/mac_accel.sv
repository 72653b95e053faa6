// mac_accel: an int8 multiply-accumulate baseline with halut_accel's stream interface.
//
// The layer y = A W (A: N x D int8 activations, W: D x M int8 weights, y: int32 with
// two's-complement wrap-around) in the same time frame as halut_accel: a row's D = C*V
// activations arrive as C input beats of V each (activations c*V .. c*V+V-1 in beat c), one
// beat per clock, and each beat updates all M accumulators with its V x M products, so a row
// takes C cycles as in halut_accel (where a beat is one codebook). A finished row moves to the
// output buffer and leaves in M/OutLanes beats while the next row accumulates.
// See docs/mac-baseline.md for the address map, the cycle timing and the comparison.
//
// Banks: with Banks = 2 the weight memory has two banks: configuration writes go to the
// shadow bank while rows stream on the active one, and a SWAP command makes the shadow bank
// active for the beats that follow (every beat carries its bank down the pipeline). Writes
// to a bank that a beat in the multiply stage still reads wait (cfg_ready_o low). With
// Banks = 1 the same writes load the only bank, which must then be idle (cfg_ready_o low
// while a beat is in the multiply stage; the host sends no beat between a weight set's
// writes and its SWAP).
//
// Pipeline (one beat per stage, a global stall enable `adv`):
//   cycle 0 : beat accepted into the multiply stage (with its bank and beat index c)
//   cycle 1 : weight read of all M columns at (bank, c), V x M int8 products, one balanced
//             adder tree per column: the beat's partial dot products are registered
//   cycle 2 : accumulate (last beat of a row: the sums go to the output buffer)
//   cycle 3 : the row's first output beat is valid
// Stall: a row finishes while the output buffer still holds the previous row and does not
// drain this cycle; then every stage holds and in_ready_o is low (in_ready_o depends
// combinationally on out_ready_i, never on in_valid_i).
//
// Style (lowRISC, as halut_accel): every register is foo_q, its next state foo_d comes from
// always_comb or an assign, and always_ff only resets foo_q or loads foo_d; the weight memory
// (never reset) keeps the memory-write idiom of lowRISC's prim_ram_1p.
module mac_accel #(
  parameter  int unsigned C        = 32,
  parameter  int unsigned V        = 4,
  parameter  int unsigned M        = 16,
  parameter  int unsigned OutLanes = 16,
  // 2: double-buffered weight memory (loading overlaps streaming); 1: one bank
  parameter  int unsigned Banks    = 2,
  localparam int unsigned CW       = (C > 1) ? $clog2(C) : 1,
  localparam int unsigned MW       = (M > 1) ? $clog2(M) : 1,
  localparam int unsigned AW       = 2 + MW + CW,
  // width of one accumulator / output lane: int32 two's complement (halut_pkg::AccW)
  localparam int unsigned AccW     = 32
) (
  input  logic                        clk_i,
  input  logic                        rst_ni,
  // configuration write port: the V weights of one column m for one beat c per write, or a
  // control command (SWAP), taken when valid && ready
  input  logic                        cfg_valid_i,
  output logic                        cfg_ready_o,
  input  logic [AW-1:0]               cfg_addr_i,
  input  logic [V*8-1:0]              cfg_data_i,
  // input stream: one beat (V int8 activations) per handshake, beats 0..C-1 of a row in order
  input  logic                        in_valid_i,
  output logic                        in_ready_o,
  input  logic [V*8-1:0]              in_data_i,
  // output stream: M/OutLanes beats per row, lane j of beat b is column b*OutLanes+j
  output logic                        out_valid_o,
  input  logic                        out_ready_i,
  output logic [OutLanes*AccW-1:0]    out_data_o
);

  // The codes are halut_accel's (halut_pkg: CfgKindLut, CfgKindCtrl, CtrlSwap, AccW; the
  // Python side takes them from emulator.hwif), written out here so that this stand-alone
  // top does not import the package (lint: its other constants would be unused parameters).
  // configuration address kinds: 1 the weights (halut_accel's LUT), 2 the control commands
  localparam logic [1:0]  CfgKindWeight = 2'd1;
  localparam logic [1:0]  CfgKindCtrl   = 2'd2;
  // control commands (kind 2, register in the address's low bits): only SWAP exists here
  localparam logic [1:0]  CtrlSwap      = 2'd2;
  localparam int unsigned NumBeats = (OutLanes > 0) ? M / OutLanes : 1;
  localparam int unsigned BW = (NumBeats > 1) ? $clog2(NumBeats) : 1;
  // the adder tree: VP leaves (V rounded up to a power of two), TL levels; a product is 16
  // bits (int8 x int8 lies in [-16256, 16384]), a beat's dot product PW = 16 + log2(VP) bits
  localparam int unsigned TL = (V > 1) ? $clog2(V) : 0;
  localparam int unsigned VP = 2 ** TL;
  localparam int unsigned PW = 16 + TL;
  // weight memory of a column: Banks * C words of V weights at (bank, c)
  localparam int unsigned WDepth = Banks * C;
  localparam int unsigned WIW = (WDepth > 1) ? $clog2(WDepth) : 1;

  // ---- parameter checks (elaboration time) ------------------------------------------------
  // $error in a generate block stops both Verilator and Yosys at elaboration. Yosys does not
  // format arguments, so the messages are plain text (Verilator adds the instance name).
  if (C < 1 || C > 1024) begin : g_bad_c
    $error("mac_accel: parameter C must be between 1 and 1024");
  end
  if (V < 1 || V > 256) begin : g_bad_v
    $error("mac_accel: parameter V must be between 1 and 256");
  end
  if (M < 1 || M > 1024) begin : g_bad_m
    $error("mac_accel: parameter M must be between 1 and 1024");
  end
  if (OutLanes < 1 || OutLanes > M || (M % OutLanes) != 0) begin : g_bad_lanes
    $error("mac_accel: parameter OutLanes must divide M");
  end
  if (M > OutLanes * C) begin : g_bad_rate
    $error("mac_accel: M > OutLanes * C: a row's M/OutLanes output beats must fit in C cycles");
  end
  if (Banks != 1 && Banks != 2) begin : g_bad_banks
    $error("mac_accel: parameter Banks must be 1 or 2");
  end

  // ---- configuration decode -------------------------------------------------------------
  // address {kind[1:0], m[MW], c[CW]}: kind 1 writes the V weights W[c*V+i, m] (data byte i)
  // of column m, beat c; kind 2 is a control command (register in the low two bits: SWAP)
  logic [1:0]    cfg_kind;
  logic [MW-1:0] cfg_m;
  logic [CW-1:0] cfg_c;
  logic [1:0]    cfg_reg;
  logic          cfg_c_ok;
  logic          cfg_fire;   // a write is taken this cycle
  logic          cfg_w, cfg_ctl;

  assign cfg_kind = cfg_addr_i[AW-1 -: 2];
  assign cfg_m    = cfg_addr_i[CW +: MW];
  assign cfg_c    = cfg_addr_i[CW-1:0];
  assign cfg_reg  = cfg_addr_i[1:0];
  assign cfg_c_ok = {1'b0, cfg_c} < (CW+1)'(C);
  assign cfg_fire = cfg_valid_i && cfg_ready_o;
  assign cfg_w    = cfg_fire && (cfg_kind == CfgKindWeight) && cfg_c_ok;
  assign cfg_ctl  = cfg_fire && (cfg_kind == CfgKindCtrl);

  // ---- banks ------------------------------------------------------------------------------
  // active_q: the bank new beats use; configuration writes go to wbank (the other bank, or
  // the only one)
  logic active_d, active_q;
  logic wbank;
  logic swap;

  assign wbank    = (Banks == 2) ? !active_q : 1'b0;
  assign swap     = cfg_ctl && (cfg_reg == CtrlSwap);
  assign active_d = (Banks == 2 && swap) ? !active_q : active_q;

  always_ff @(posedge clk_i or negedge rst_ni) begin
    if (!rst_ni) begin
      active_q <= 1'b0;
    end else begin
      active_q <= active_d;
    end
  end

  // ---- input beat counter -----------------------------------------------------------------
  logic          adv;       // global advance enable (low: every stage holds)
  logic          in_fire;
  logic [CW-1:0] c_in_d, c_in_q;
  logic          in_first, in_last;

  assign in_ready_o = adv;
  assign in_fire    = in_valid_i && adv;
  assign in_first   = (c_in_q == '0);
  assign in_last    = (c_in_q == CW'(C - 1));

  // a SWAP starts a weight set: its first beat is beat 0 of a row
  always_comb begin
    c_in_d = c_in_q;
    if (swap) begin
      c_in_d = '0;
    end else if (in_fire) begin
      c_in_d = in_last ? '0 : c_in_q + 1'b1;
    end
  end

  always_ff @(posedge clk_i or negedge rst_ni) begin
    if (!rst_ni) begin
      c_in_q <= '0;
    end else begin
      c_in_q <= c_in_d;
    end
  end

  // ---- multiply stage: the registered beat --------------------------------------------------
  logic          x_v_q;      // valid
  logic          x_bank_q;   // the bank its weights come from
  logic [CW-1:0] x_c_q;      // beat index in the row
  logic          x_first_q;  // first / last beat of its row
  logic          x_last_q;
  logic [V*8-1:0] x_data_q;  // the V activations

  always_ff @(posedge clk_i or negedge rst_ni) begin
    if (!rst_ni) begin
      x_v_q     <= 1'b0;
      x_bank_q  <= 1'b0;
      x_c_q     <= '0;
      x_first_q <= 1'b0;
      x_last_q  <= 1'b0;
      x_data_q  <= '0;
    end else if (adv) begin
      x_v_q     <= in_fire;
      x_bank_q  <= (Banks == 2) ? active_q : 1'b0;
      x_c_q     <= c_in_q;
      x_first_q <= in_first;
      x_last_q  <= in_last;
      x_data_q  <= in_data_i;
    end
  end

  // the weight memory of the bank being written may change only when no beat in the multiply
  // stage reads it (the input stage reads no memory)
  assign cfg_ready_o = !(x_v_q && (x_bank_q == wbank));

  // ---- accumulation stage -------------------------------------------------------------------
  logic            a_v_q;      // valid, first / last beat of the row, and the M partial dot
  logic            a_first_q;  // products of the beat (sign-extended at the adder)
  logic            a_last_q;
  logic [PW-1:0]   dot_q  [M];
  logic [AccW-1:0] acc_q  [M];
  logic [AccW-1:0] obuf_q [M];
  logic            row_done;   // the accumulation stage holds the last beat of a row
  logic [WIW-1:0]  w_raddr;    // word (bank, c), shared by all columns
  logic [WIW-1:0]  w_waddr;

  assign row_done = a_v_q && a_last_q;
  assign w_raddr  = WIW'(32'(x_bank_q) * C + 32'(x_c_q));
  assign w_waddr  = WIW'(32'(wbank) * C + 32'(cfg_c));

  always_ff @(posedge clk_i or negedge rst_ni) begin
    if (!rst_ni) begin
      a_v_q     <= 1'b0;
      a_first_q <= 1'b0;
      a_last_q  <= 1'b0;
    end else if (adv) begin
      a_v_q     <= x_v_q;
      a_first_q <= x_first_q;
      a_last_q  <= x_last_q;
    end
  end

  for (genvar m = 0; m < M; m++) begin : g_col
    // weight memory of column m: word (bank, c) holds W[c*V+i, m] in byte i; flip-flops, not
    // reset (only read after it has been written)
    logic [V*8-1:0]  w_mem [WDepth];
    logic            w_we;
    logic [V*8-1:0]  w_word;
    logic [VP*PW-1:0] prod;  // the sign-extended products, zero beyond V
    logic [VP*PW-1:0] tree;  // the adder tree, reduced in place (node i of a level in slot i)
    logic [PW-1:0]   dot_d;
    logic [AccW-1:0] base, sum;

    assign w_we   = cfg_w && (32'(cfg_m) == m);
    assign w_word = w_mem[w_raddr];

    always_ff @(posedge clk_i) begin
      if (w_we) begin
        w_mem[w_waddr] <= cfg_data_i;
      end
    end

    // V signed 8 x 8 multipliers: activation i times weight i of the beat (the operands are
    // signed through $signed only: OpenSTA 2.0.17 cannot read a `wire signed` in a netlist)
    for (genvar i = 0; i < VP; i++) begin : g_mul
      if (i < V) begin : g_lane
        logic [7:0]    x, w;
        logic [15:0]   p;
        assign x = x_data_q[i*8 +: 8];
        assign w = w_word[i*8 +: 8];
        assign p = $signed(x) * $signed(w);
        if (TL > 0) begin : g_ext  // sign-extended to the tree's width
          assign prod[i*PW +: PW] = {{TL{p[15]}}, p};
        end else begin : g_noext
          assign prod[i*PW +: PW] = p;
        end
      end else begin : g_pad
        assign prod[i*PW +: PW] = '0;
      end
    end

    // balanced adder tree over the VP leaves: level l adds pairs of the level below into
    // slots 0 .. VP/2^(l+1)-1 (a slot is written before any later slot of its level reads
    // its own children, which lie above it), PW bits hold the exact sum
    always_comb begin
      tree = prod;
      for (int l = 0; l < int'(TL); l++) begin
        for (int j = 0; j < int'(VP >> (l + 1)); j++) begin
          tree[j*PW +: PW] = tree[2*j*PW +: PW] + tree[(2*j+1)*PW +: PW];
        end
      end
    end
    assign dot_d = tree[PW-1:0];

    // a row starts from zero at its first beat; int32 two's complement, wrapping around
    assign base = a_first_q ? '0 : acc_q[m];
    assign sum  = base + {{(AccW - PW){dot_q[m][PW-1]}}, dot_q[m]};

    // next state of column m, loaded when adv is high: the row's sum goes to the accumulator,
    // or for its last beat to the output buffer (write enables rather than a hold in the next
    // state, as in halut_accel)
    logic acc_en, obuf_en;
    assign acc_en  = adv && a_v_q && !row_done;
    assign obuf_en = adv && a_v_q && row_done;

    always_ff @(posedge clk_i or negedge rst_ni) begin
      if (!rst_ni) begin
        dot_q[m] <= '0;
      end else if (adv) begin
        dot_q[m] <= dot_d;
      end
    end

    always_ff @(posedge clk_i or negedge rst_ni) begin
      if (!rst_ni) begin
        acc_q[m] <= '0;
      end else if (acc_en) begin
        acc_q[m] <= sum;
      end
    end

    always_ff @(posedge clk_i or negedge rst_ni) begin
      if (!rst_ni) begin
        obuf_q[m] <= '0;
      end else if (obuf_en) begin
        obuf_q[m] <= sum;
      end
    end
  end

  // ---- output buffer ----------------------------------------------------------------------
  logic          obuf_busy_d, obuf_busy_q;
  logic [BW-1:0] beat_d, beat_q;
  logic          out_fire, out_last, obuf_free;

  assign out_valid_o = obuf_busy_q;
  assign out_fire    = obuf_busy_q && out_ready_i;
  assign out_last    = out_fire && (beat_q == BW'(NumBeats - 1));
  assign obuf_free   = !obuf_busy_q || out_last;
  assign adv         = !(row_done && !obuf_free);

  always_comb begin
    obuf_busy_d = obuf_busy_q;
    beat_d      = beat_q;
    if (row_done && adv) begin
      // a finished row enters the buffer (the previous one has left or leaves now)
      obuf_busy_d = 1'b1;
      beat_d      = '0;
    end else if (out_last) begin
      obuf_busy_d = 1'b0;
      beat_d      = '0;
    end else if (out_fire) begin
      beat_d = beat_q + 1'b1;
    end
  end

  always_ff @(posedge clk_i or negedge rst_ni) begin
    if (!rst_ni) begin
      obuf_busy_q <= 1'b0;
      beat_q      <= '0;
    end else begin
      obuf_busy_q <= obuf_busy_d;
      beat_q      <= beat_d;
    end
  end

  for (genvar j = 0; j < OutLanes; j++) begin : g_lane
    assign out_data_o[j*AccW +: AccW] = obuf_q[MW'(32'(beat_q) * OutLanes + j)];
  end

endmodule
