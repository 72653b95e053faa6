// halut_accel: the MADDNESS (halut) accelerator, after Stella Nera (arXiv 2311.10207).
//
// One input beat per clock carries the L = log2(K) gathered features of one codebook of
// one row (codebooks 0..cnum-1 in order; the accelerator counts c itself, cnum <= C is a
// run-time register). A pipelined balanced decision tree encodes the beat (level l compares
// feature l with a threshold from its own memory, selected by (bank, c, prefix of the
// code)), the code selects one LUT entry per output column, and M accumulators sum the
// cnum entries of a row in codebook order (int8 LUT: int32 wrap-around; fp16 LUT: IEEE fp32,
// every codebook through the fp32 adder). A row starts from +0 or, when the job's preload
// register is set, from M values taken from the preload port (the partial sums of the
// previous codebook pass: a layer with more codebooks than C runs as several passes). A
// finished row moves to the output buffer and leaves in M/OutLanes beats while the next row
// accumulates. See docs/rtl.md for the block diagram and the cycle timing,
// docs/address-map.md for the configuration port.
//
// Jobs and banks: a job is one program slice (thresholds, LUT tile, cnum, preload flag). With
// Banks = 2 every memory and job register has two banks: configuration writes go to the
// shadow bank while rows stream on the active one, and a SWAP command makes the shadow bank
// active for the beats that follow (every beat carries its bank down the pipeline). Writes
// to a bank that still has beats in the tree wait (cfg_ready_o low). With Banks = 1 the same
// commands load the only bank, which must then be idle (cfg_ready_o low while beats are in
// the tree).
//
// Pipeline (one codebook beat per stage, a global stall enable `adv`):
//   cycle 0      : beat accepted, level 0 compares it (threshold memory read by bank, c)
//   cycle 1..L-1 : level l compares feature l (registered after each level)
//   cycle L      : LUT read of all M columns at (bank, c, code) (fp16 LUT: and the entry's
//                  exact conversion to fp32, so that the accumulation loop holds only the adder)
//   cycle L+1    : accumulate (last codebook: the sums go to the output buffer)
//   cycle L+2    : the row's first output beat is valid
// Stalls: a row finishes while the output buffer still holds the previous row and does not
// drain this cycle, or a row's first codebook reaches the accumulators before its preload has
// arrived; then every stage holds and in_ready_o is low (in_ready_o, pre_ready_o depend
// combinationally on out_ready_i, never on in_valid_i / pre_valid_i).
//
// Style (lowRISC): every register is foo_q, its next state foo_d comes from always_comb, and
// always_ff only resets foo_q or loads foo_d. The configuration memories (thr_mem, lut_mem:
// one port word per write, never reset) keep the memory-write idiom of lowRISC's prim_ram_1p
// (`if (we) mem[waddr] <= wdata`), which Yosys maps as a memory.
module halut_accel #(
  parameter  int unsigned         C        = 32,
  parameter  int unsigned         K        = 16,
  parameter  int unsigned         M        = 16,
  // features/thresholds: ThrFmtFp16 (0) or ThrFmtInt8 (1)
  parameter  halut_pkg::thr_fmt_e ThrFmt   = halut_pkg::ThrFmtFp16,
  // LUT: LutFmtInt8 (0, int32 accumulation) or LutFmtFp16 (1, fp32 accumulation)
  parameter  halut_pkg::lut_fmt_e LutFmt   = halut_pkg::LutFmtInt8,
  parameter  int unsigned         OutLanes = 16,
  // entries per configuration write (a power of two, at most K): the data port's lanes
  parameter  int unsigned         CfgLanes = 16,
  // 2: double-buffered memories (loading overlaps streaming); 1: one bank
  parameter  int unsigned         Banks    = 2,
  localparam int unsigned         L        = (K > 1) ? $clog2(K) : 1,
  localparam int unsigned         FeatW    = (ThrFmt == halut_pkg::ThrFmtFp16) ?
                                             halut_pkg::Fp16W : 8,
  localparam int unsigned         CW       = (C > 1) ? $clog2(C) : 1,
  localparam int unsigned         MW       = (M > 1) ? $clog2(M) : 1,
  localparam int unsigned         LW       = (L > 1) ? $clog2(L) : 1,
  localparam int unsigned         SW       = (MW > LW) ? MW : LW,
  localparam int unsigned         QN       = (CfgLanes >= 1 && CfgLanes <= K) ? K / CfgLanes : 1,
  localparam int unsigned         QW       = (QN > 1) ? $clog2(QN) : 1,
  localparam int unsigned         AW       = 2 + SW + CW + QW,
  localparam int unsigned         DW       = CfgLanes * halut_pkg::CfgDataW
) (
  input  logic                                clk_i,
  input  logic                                rst_ni,
  // configuration write port: CfgLanes entries per write, taken when valid && ready
  input  logic                                cfg_valid_i,
  output logic                                cfg_ready_o,
  input  logic [AW-1:0]                       cfg_addr_i,
  input  logic [DW-1:0]                       cfg_data_i,
  // input stream: one codebook beat (L features) per handshake
  input  logic                                in_valid_i,
  output logic                                in_ready_o,
  input  logic [L*FeatW-1:0]                  in_data_i,
  // preload stream (rows of a job with the preload flag): M/OutLanes beats per row, lane j
  // of beat b is column b*OutLanes+j, the value the row's accumulators start from
  input  logic                                pre_valid_i,
  output logic                                pre_ready_o,
  input  logic [OutLanes*halut_pkg::AccW-1:0] pre_data_i,
  // output stream: M/OutLanes beats per row, lane j of beat b is column b*OutLanes+j
  output logic                                out_valid_o,
  input  logic                                out_ready_i,
  output logic [OutLanes*halut_pkg::AccW-1:0] out_data_o
);

  localparam int unsigned AccW = halut_pkg::AccW;
  localparam int unsigned DataW = halut_pkg::CfgDataW;
  localparam int unsigned LutW = (LutFmt == halut_pkg::LutFmtFp16) ? halut_pkg::Fp16W : 8;
  // the LUT value register of a column: the entry (int8), or the entry converted to fp32 in
  // the LUT-read stage without its redundant bits (fp16; halut_fp16_acc), so that the
  // conversion is not in the accumulation loop
  localparam int unsigned F32ValW = halut_pkg::Fp32W - 1 - (halut_pkg::Fp32ManW -
                                                             halut_pkg::Fp16ManW);
  localparam int unsigned AValW = (LutFmt == halut_pkg::LutFmtFp16) ? F32ValW : 8;
  localparam int unsigned NumBeats = (OutLanes > 0) ? M / OutLanes : 1;
  localparam int unsigned BW = (NumBeats > 1) ? $clog2(NumBeats) : 1;
  localparam int unsigned PW = $clog2(NumBeats + 1);  // preload beat counter 0..NumBeats
  // LUT memory of a column: Banks * C * K entries at (bank, c, k), written CfgLanes at a time
  localparam int unsigned LutDepth = Banks * C * K;
  localparam int unsigned LIW = $clog2(LutDepth);  // >= 1 as K >= 2

  // ---- parameter checks (elaboration time) ------------------------------------------------
  // $error in a generate block stops both Verilator and Yosys at elaboration. Yosys does not
  // format arguments, so the messages are plain text (Verilator adds the instance name).
  if (K < 2 || K > 256 || (K & (K - 1)) != 0) begin : g_bad_k
    $error("halut_accel: parameter K must be a power of two between 2 and 256");
  end
  if (C < 1 || C > 1024) begin : g_bad_c
    $error("halut_accel: parameter C must be between 1 and 1024");
  end
  if (M < 1 || M > 1024) begin : g_bad_m
    $error("halut_accel: parameter M must be between 1 and 1024");
  end
  if (ThrFmt != halut_pkg::ThrFmtFp16 && ThrFmt != halut_pkg::ThrFmtInt8) begin : g_bad_thr
    $error("halut_accel: parameter ThrFmt must be 0 (fp16) or 1 (int8)");
  end
  if (LutFmt != halut_pkg::LutFmtInt8 && LutFmt != halut_pkg::LutFmtFp16) begin : g_bad_lut
    $error("halut_accel: parameter LutFmt must be 0 (int8) or 1 (fp16)");
  end
  if (OutLanes < 1 || OutLanes > M || (M % OutLanes) != 0) begin : g_bad_lanes
    $error("halut_accel: parameter OutLanes must divide M");
  end
  if (M > OutLanes * C) begin : g_bad_rate
    $error("halut_accel: M > OutLanes * C: a row's M/OutLanes output beats must fit in C cycles");
  end
  if (CfgLanes < 1 || CfgLanes > K || (CfgLanes & (CfgLanes - 1)) != 0) begin : g_bad_cfg
    $error("halut_accel: parameter CfgLanes must be a power of two between 1 and K");
  end
  if (Banks != 1 && Banks != 2) begin : g_bad_banks
    $error("halut_accel: parameter Banks must be 1 or 2");
  end

  // ---- configuration decode -------------------------------------------------------------
  // address {kind[1:0], sel[SW], c[CW], q[QW]}: kind 0 threshold (sel = tree level, q =
  // word of the level), 1 LUT (sel = column m, q = word of K/CfgLanes), 2 control (register
  // in the low bits: CNUM, PRELOAD, SWAP); data lane i = entry q*CfgLanes + i of the word
  logic [1:0]    cfg_kind;
  logic [SW-1:0] cfg_sel;
  logic [CW-1:0] cfg_c;
  logic [QW-1:0] cfg_q;
  logic          cfg_c_ok;
  logic          cfg_fire;   // a write is taken this cycle
  logic          cfg_thr, cfg_lut, cfg_ctl;
  logic [1:0]    cfg_reg;

  assign cfg_kind = cfg_addr_i[AW-1 -: 2];
  assign cfg_sel  = cfg_addr_i[CW+QW +: SW];
  assign cfg_c    = cfg_addr_i[QW +: CW];
  assign cfg_q    = cfg_addr_i[QW-1:0];
  assign cfg_reg  = cfg_addr_i[1:0];
  assign cfg_c_ok = {1'b0, cfg_c} < (CW+1)'(C);
  assign cfg_fire = cfg_valid_i && cfg_ready_o;
  assign cfg_thr  = cfg_fire && (cfg_kind == halut_pkg::CfgKindThr) && cfg_c_ok;
  assign cfg_lut  = cfg_fire && (cfg_kind == halut_pkg::CfgKindLut) && cfg_c_ok &&
                    (32'(cfg_q) < QN);
  assign cfg_ctl  = cfg_fire && (cfg_kind == halut_pkg::CfgKindCtrl);

  // the int8 formats use only the low byte of each data lane (the high byte is its sign
  // extension), short words leave upper lanes unused (Verilator ignores *unused* signals)
  logic unused_cfg;
  assign unused_cfg = ^{cfg_data_i, cfg_addr_i};

  // ---- banks and job registers ------------------------------------------------------------
  // active_q: the bank new beats use; configuration writes go to wbank (the other bank, or
  // the only one). cnum_q / pre_q hold each bank's codebook count (as its last index) and
  // preload flag.
  logic          active_d, active_q;
  logic          wbank;
  logic          swap;
  logic [CW-1:0] clast_q [Banks];
  logic          pre_q   [Banks];
  logic [CW:0]   cfg_cnum;
  logic          cfg_cnum_ok;  // lane 0 holds 1..C

  assign wbank    = (Banks == 2) ? !active_q : 1'b0;
  assign swap     = cfg_ctl && (cfg_reg == halut_pkg::CtrlSwap);
  assign active_d = (Banks == 2 && swap) ? !active_q : active_q;
  assign cfg_cnum = cfg_data_i[CW:0];
  assign cfg_cnum_ok = (cfg_data_i[DataW-1:0] != '0) &&
                       (cfg_data_i[DataW-1:0] <= DataW'(C));

  always_ff @(posedge clk_i or negedge rst_ni) begin
    if (!rst_ni) begin
      active_q <= 1'b0;
    end else begin
      active_q <= active_d;
    end
  end

  for (genvar b = 0; b < Banks; b++) begin : g_bank
    logic          clast_en, pre_en;
    logic [CW-1:0] clast_d;
    logic          pre_d;

    // CNUM takes 1..C (a value outside is ignored); PRELOAD takes bit 0
    assign clast_en = cfg_ctl && (cfg_reg == halut_pkg::CtrlCnum) && (32'(wbank) == b) &&
                      cfg_cnum_ok;
    assign clast_d  = CW'(cfg_cnum - 1'b1);
    assign pre_en   = cfg_ctl && (cfg_reg == halut_pkg::CtrlPreload) &&
                      (32'(wbank) == b);
    assign pre_d    = cfg_data_i[0];

    always_ff @(posedge clk_i or negedge rst_ni) begin
      if (!rst_ni) begin
        clast_q[b] <= CW'(C - 1);
      end else if (clast_en) begin
        clast_q[b] <= clast_d;
      end
    end

    always_ff @(posedge clk_i or negedge rst_ni) begin
      if (!rst_ni) begin
        pre_q[b] <= 1'b0;
      end else if (pre_en) begin
        pre_q[b] <= pre_d;
      end
    end
  end

  // ---- input codebook counter -------------------------------------------------------------
  logic          adv;       // global advance enable (low: every stage holds)
  logic          in_fire;
  logic [CW-1:0] c_in_d, c_in_q;
  logic [CW-1:0] clast;     // the active bank's last codebook
  logic          in_first, in_last, in_pre;

  assign in_ready_o = adv;
  assign in_fire    = in_valid_i && adv;
  assign clast      = clast_q[(Banks == 2) ? active_q : 1'b0];
  assign in_first   = (c_in_q == '0);
  assign in_last    = (c_in_q == clast);
  assign in_pre     = pre_q[(Banks == 2) ? active_q : 1'b0];

  // a SWAP starts a job: its first beat is codebook 0
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

  // ---- tree: one stage per level ---------------------------------------------------------
  // p_*_q[l]: the beat after level l compared (valid, bank, codebook, first / last codebook
  // of its row, preload flag, code prefix of l+1 bits in the low bits, features l+1..L-1 in
  // the low slots)
  logic                 p_v_q     [L];
  logic                 p_bank_q  [L];
  logic [CW-1:0]        p_c_q     [L];
  logic                 p_first_q [L];
  logic                 p_last_q  [L];
  logic                 p_pre_q   [L];
  logic [L-1:0]         p_code_q  [L];
  logic [L*FeatW-1:0]   p_feat_q  [L];
  logic [L-1:0]         p_busy;    // stage l holds a beat of the bank being written

  for (genvar l = 0; l < L; l++) begin : g_lvl
    // level l has 2^l thresholds per codebook, in words of We entries, Qn words per codebook
    localparam int unsigned We    = ((2 ** l) < CfgLanes) ? (2 ** l) : CfgLanes;
    localparam int unsigned Qn    = (2 ** l) / We;
    localparam int unsigned Depth = Banks * C * Qn;
    localparam int unsigned IW    = (Depth > 1) ? $clog2(Depth) : 1;

    logic               v_in, bank_in, first_in, last_in, pre_in;
    logic [CW-1:0]      c_in;
    logic [L-1:0]       code_in;
    logic [L*FeatW-1:0] feat_in;

    if (l == 0) begin : g_first
      assign v_in     = in_fire;
      assign bank_in  = (Banks == 2) ? active_q : 1'b0;
      assign c_in     = c_in_q;
      assign first_in = in_first;
      assign last_in  = in_last;
      assign pre_in   = in_pre;
      assign code_in  = '0;
      assign feat_in  = in_data_i;
    end else begin : g_next
      assign v_in     = p_v_q[l-1];
      assign bank_in  = p_bank_q[l-1];
      assign c_in     = p_c_q[l-1];
      assign first_in = p_first_q[l-1];
      assign last_in  = p_last_q[l-1];
      assign pre_in   = p_pre_q[l-1];
      assign code_in  = p_code_q[l-1];
      assign feat_in  = p_feat_q[l-1];
    end

    // threshold memory of this level: word (bank, c, q) holds entries q*We .. q*We+We-1
    // (entry = code prefix), flip-flops, not reset
    logic [We*FeatW-1:0] thr_mem [Depth];
    logic                thr_we;
    logic [IW-1:0]       thr_waddr, thr_raddr;
    logic [We*FeatW-1:0] thr_wdata;
    logic [FeatW-1:0]    thr;
    logic                bit_l;
    logic [31:0]         prefix;

    assign thr_we    = cfg_thr && (32'(cfg_sel) == l) && (32'(cfg_q) < Qn);
    assign thr_waddr = IW'((32'(wbank) * C + 32'(cfg_c)) * Qn + 32'(cfg_q));
    for (genvar i = 0; i < We; i++) begin : g_wlane
      assign thr_wdata[i*FeatW +: FeatW] = cfg_data_i[i*DataW +: FeatW];
    end
    assign prefix    = 32'(code_in);
    assign thr_raddr = IW'((32'(bank_in) * C + 32'(c_in)) * Qn + prefix / We);
    assign thr       = thr_mem[thr_raddr][(prefix % We) * FeatW +: FeatW];

    always_ff @(posedge clk_i) begin
      if (thr_we) begin
        thr_mem[thr_waddr] <= thr_wdata;
      end
    end

    halut_thr_gt #(.ThrFmt(ThrFmt)) u_cmp (
      .f_i (feat_in[FeatW-1:0]),
      .t_i (thr),
      .gt_o(bit_l)
    );

    // next state of stage l (loaded when adv is high: every stage holds while it is low)
    logic               p_v_d;
    logic [L-1:0]       p_code_d;
    logic [L*FeatW-1:0] p_feat_d;

    assign p_v_d    = v_in;
    assign p_code_d = (code_in << 1) | L'(bit_l);
    assign p_feat_d = feat_in >> FeatW; // the next level's feature moves to slot 0

    always_ff @(posedge clk_i or negedge rst_ni) begin
      if (!rst_ni) begin
        p_v_q[l]     <= 1'b0;
        p_bank_q[l]  <= 1'b0;
        p_c_q[l]     <= '0;
        p_first_q[l] <= 1'b0;
        p_last_q[l]  <= 1'b0;
        p_pre_q[l]   <= 1'b0;
        p_code_q[l]  <= '0;
        p_feat_q[l]  <= '0;
      end else if (adv) begin
        p_v_q[l]     <= p_v_d;
        p_bank_q[l]  <= bank_in;
        p_c_q[l]     <= c_in;
        p_first_q[l] <= first_in;
        p_last_q[l]  <= last_in;
        p_pre_q[l]   <= pre_in;
        p_code_q[l]  <= p_code_d;
        p_feat_q[l]  <= p_feat_d;
      end
    end

    assign p_busy[l] = p_v_q[l] && (p_bank_q[l] == wbank);
  end

  // memories of the bank being written may change only when no beat in the tree reads them
  // (the input stage reads the active bank, which is written only with Banks = 1, and then
  // the host sends no beats before the job's SWAP)
  assign cfg_ready_o = !(|p_busy);

  // ---- LUT read stage and accumulation stage ------------------------------------------------
  logic                lut_v;
  logic [LIW-1:0]      lut_raddr;  // entry (bank, c, code), shared by all columns
  logic                a_v_q;      // accumulation stage: valid, first / last codebook of the
  logic                a_first_q;  // row (from zero or the preload; to the output buffer),
  logic                a_last_q;   // preload flag, and the M LUT values
  logic                a_pre_q;
  logic                a_zero_q;   // the row starts from zero here (first, no preload)
  logic [AValW-1:0]    a_val_q [M];  // int8 LUT: the entry; fp16 LUT: it converted to fp32
  logic [AccW-1:0]     acc_q   [M];
  logic [AccW-1:0]     obuf_q  [M];
  logic [AccW-1:0]     pbuf_q  [M];
  logic                row_done;   // the accumulation stage holds the last codebook of a row
  logic                pre_load;   // the accumulators take the preload buffer this cycle
  logic                pre_wait;   // a row's first codebook waits for its preload

  assign lut_v     = p_v_q[L-1];
  assign lut_raddr = LIW'((32'(p_bank_q[L-1]) * C + 32'(p_c_q[L-1])) * K + 32'(p_code_q[L-1]));
  assign row_done  = a_v_q && a_last_q;

  // p_feat_q[L-1] is all zeros (every feature consumed); read here so lint sees it used
  logic unused_feat;
  assign unused_feat = ^p_feat_q[L-1];

  always_ff @(posedge clk_i or negedge rst_ni) begin
    if (!rst_ni) begin
      a_v_q     <= 1'b0;
      a_first_q <= 1'b0;
      a_last_q  <= 1'b0;
      a_pre_q   <= 1'b0;
      a_zero_q  <= 1'b0;
    end else if (adv) begin
      a_v_q     <= lut_v;
      a_first_q <= p_first_q[L-1];
      a_last_q  <= p_last_q[L-1];
      a_pre_q   <= p_pre_q[L-1];
      a_zero_q  <= p_first_q[L-1] && !p_pre_q[L-1];
    end
  end

  // ---- preload: the M start values of the next row that takes one ------------------------
  // The preload port fills pbuf_q; the accumulators take it (pre_load) once no row uses them
  // and the next row to start takes a preload: as that row's first codebook moves from the
  // LUT stage to the accumulation stage (no cycle lost), else once it waits there (a cycle,
  // or until the preload has arrived). The accumulation stage itself never reads pbuf_q: a
  // row starts from 0 or from acc_q.
  logic [PW-1:0] pcnt_d, pcnt_q;     // preload beats held (NumBeats: full)
  logic          loaded_d, loaded_q; // acc_q holds the preload of the row at the acc stage
  logic          idle_d, idle_q;     // no row is accumulating (acc_q is free)
  logic          pbuf_full;
  logic          pre_fire;
  logic [BW-1:0] pre_beat;           // the beat pre_data_i fills
  logic          lut_pre_first;      // the LUT stage holds a first codebook taking a preload
  logic          a_pre_first;        // ... the accumulation stage
  logic          acc_free;           // acc_q is free after this clock edge

  assign pbuf_full     = (pcnt_q == PW'(NumBeats));
  assign lut_pre_first = p_v_q[L-1] && p_first_q[L-1] && p_pre_q[L-1];
  assign a_pre_first   = a_v_q && a_first_q && a_pre_q;
  assign acc_free      = row_done || (idle_q && !a_v_q);
  assign pre_wait      = a_pre_first && !loaded_q;
  assign pre_load      = pbuf_full && ((adv && acc_free && lut_pre_first) || pre_wait);
  assign pre_ready_o   = !pbuf_full || pre_load;  // a full buffer refills as it is taken
  assign pre_fire      = pre_valid_i && pre_ready_o;
  assign pre_beat      = pbuf_full ? '0 : BW'(pcnt_q);

  always_comb begin
    pcnt_d = pcnt_q;
    if (pre_load) begin
      pcnt_d = pre_fire ? PW'(1) : '0;
    end else if (pre_fire) begin
      pcnt_d = pcnt_q + 1'b1;
    end
    loaded_d = loaded_q;
    if (pre_load) begin
      loaded_d = 1'b1;
    end else if (adv && a_pre_first) begin
      loaded_d = 1'b0;  // the row has started from it
    end
    idle_d = idle_q;
    if (adv && a_v_q) begin
      idle_d = row_done;  // a row ends, or one is under way
    end
  end

  always_ff @(posedge clk_i or negedge rst_ni) begin
    if (!rst_ni) begin
      pcnt_q   <= '0;
      loaded_q <= 1'b0;
      idle_q   <= 1'b1;
    end else begin
      pcnt_q   <= pcnt_d;
      loaded_q <= loaded_d;
      idle_q   <= idle_d;
    end
  end

  // the preload buffer (not reset: only read after it has been filled)
  always_ff @(posedge clk_i) begin
    if (pre_fire) begin
      for (int j = 0; j < OutLanes; j++) begin
        pbuf_q[32'(pre_beat) * OutLanes + j] <= pre_data_i[j*AccW +: AccW];
      end
    end
  end

  for (genvar m = 0; m < M; m++) begin : g_col
    // LUT memory of column m: entry (bank, c, k), flip-flops, not reset; a write fills the
    // CfgLanes entries k = q*CfgLanes .. q*CfgLanes+CfgLanes-1 (one word of the port). The
    // memory is kept entry-wide, not word-wide: Verilator simulated the word-wide form with
    // a lane select on every read about 15% slower (C=32 K=16 M=16, the benchmark's ceiling)
    logic [LutW-1:0]          lut_mem [LutDepth];
    logic                     lut_we;
    logic [LIW-1:0]           lut_waddr;  // the word's first entry
    logic [CfgLanes*LutW-1:0] lut_wdata;
    logic [AccW-1:0]          base, sum;

    assign lut_we    = cfg_lut && (32'(cfg_sel) == m);
    assign lut_waddr = LIW'(((32'(wbank) * C + 32'(cfg_c)) * QN + 32'(cfg_q)) * CfgLanes);
    for (genvar i = 0; i < CfgLanes; i++) begin : g_wlane
      assign lut_wdata[i*LutW +: LutW] = cfg_data_i[i*DataW +: LutW];
    end

    always_ff @(posedge clk_i) begin
      if (lut_we) begin
        for (int i = 0; i < CfgLanes; i++) begin
          lut_mem[lut_waddr + LIW'(i)] <= lut_wdata[i*LutW +: LutW];
        end
      end
    end

    // a row starts from zero (+0.0 for fp32) at its first codebook, or from the preload the
    // accumulator took before (a_zero_q: decoded a stage early, one flag before the adder)
    assign base = a_zero_q ? '0 : acc_q[m];

    // the LUT read of the LUT-read stage; its value register a_val_q[m] loads a_val_d
    logic [LutW-1:0]  lut_rd;
    logic [AValW-1:0] a_val_d;

    assign lut_rd = lut_mem[lut_raddr];

    if (LutFmt == halut_pkg::LutFmtFp16) begin : g_fp
      // fp16 -> fp32 in the LUT-read stage (exact, into a_val_q), fp32 add in the
      // accumulation stage
      halut_fp16_acc u_acc (
        .lut_i(lut_rd),
        .val_o(a_val_d),
        .acc_i(base),
        .val_i(a_val_q[m]),
        .sum_o(sum)
      );
    end else begin : g_int
      assign a_val_d = lut_rd;
      halut_int8_acc u_add (
        .acc_i(base),
        .x_i  (a_val_q[m]),
        .sum_o(sum)
      );
    end

    // next state of column m: the LUT value read at (bank, c, code), loaded when adv is high;
    // the row's sum goes to the accumulator, or for its last codebook to the output buffer
    // (write enables rather than a hold in the next state: an unpacked-array register written
    // only when it changes also simulates faster in Verilator); the accumulator takes the
    // preload when no row is using it (pre_load never coincides with an accumulation)
    logic [AccW-1:0] acc_d, obuf_d;
    logic            acc_en, obuf_en;

    assign acc_d   = pre_load ? pbuf_q[m] : sum;
    assign obuf_d  = sum;
    assign acc_en  = (adv && a_v_q && !row_done) || pre_load;
    assign obuf_en = adv && a_v_q && row_done;

    always_ff @(posedge clk_i or negedge rst_ni) begin
      if (!rst_ni) begin
        a_val_q[m] <= '0;
      end else if (adv) begin
        a_val_q[m] <= a_val_d;
      end
    end

    always_ff @(posedge clk_i or negedge rst_ni) begin
      if (!rst_ni) begin
        acc_q[m] <= '0;
      end else if (acc_en) begin
        acc_q[m] <= acc_d;
      end
    end

    always_ff @(posedge clk_i or negedge rst_ni) begin
      if (!rst_ni) begin
        obuf_q[m] <= '0;
      end else if (obuf_en) begin
        obuf_q[m] <= obuf_d;
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
  assign adv         = !(row_done && !obuf_free) && !pre_wait;

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

  // ---- protocol assertions (simulation only; docs/reliability-rtl.md) ---------------------
  // Compiled only with HALUT_ASSERT defined (emulator.verilator.assert_flags(): Verilator
  // `--assert +define+HALUT_ASSERT`); synthesis never reads them (Yosys defines SYNTHESIS).
  // The define, not --assert, keeps them out of the default builds: Verilator 5.048 compiles
  // and enables `assert` statements without --assert too (only --no-assert drops them).
  // Concurrent assertions sample at the rising edge; `assume` states a rule of the host
  // (the inputs), `assert` one of the chip. A failure prints Verilator's "Assertion failed"
  // line and calls vl_stop(): the build's hook turns it into a Python HalutError
  // (emulator/verilator.py); without the hook Verilator exits the process with status 1.
  // "The next cycle" is written `|=>` or with $past (`##` delays need the --timing option).
`ifndef SYNTHESIS
`ifdef HALUT_ASSERT
  // checks run from the second clock edge after reset (an asynchronously reset flop:
  // `disable iff (!rst_ni)` would be a synchronous use of rst_ni, lint's SYNCASYNCNET)
  logic chk_en_q;
  always_ff @(posedge clk_i or negedge rst_ni) begin
    if (!rst_ni) begin
      chk_en_q <= 1'b0;
    end else begin
      chk_en_q <= 1'b1;
    end
  end
  // the first failure ends the checks of this simulation (set by the failing assertion's
  // action): one report, not one per cycle while a broken state persists
  logic chk_fired = 1'b0;

  // host: a beat, write or preload beat offered while ready is low stays offered, with the
  // same data, until it is taken (bubbles fall between beats, never inside one)
  a_in_held: assume property (@(posedge clk_i) disable iff (!chk_en_q || chk_fired)
      in_valid_i && !in_ready_o |=> in_valid_i)
    else begin
      $error("halut_accel: in_valid_i dropped while a beat waited for in_ready_o");
      chk_fired = 1'b1;
    end
  a_in_stable: assume property (@(posedge clk_i) disable iff (!chk_en_q || chk_fired)
      in_valid_i && $past(in_valid_i && !in_ready_o) |-> $stable(in_data_i))
    else begin
      $error("halut_accel: in_data_i changed while a beat waited for in_ready_o");
      chk_fired = 1'b1;
    end
  a_cfg_held: assume property (@(posedge clk_i) disable iff (!chk_en_q || chk_fired)
      cfg_valid_i && !cfg_ready_o |=> cfg_valid_i)
    else begin
      $error("halut_accel: cfg_valid_i dropped while a write waited for cfg_ready_o");
      chk_fired = 1'b1;
    end
  a_cfg_stable: assume property (@(posedge clk_i) disable iff (!chk_en_q || chk_fired)
      cfg_valid_i && !cfg_ready_o |=> $stable(cfg_addr_i) && $stable(cfg_data_i))
    else begin
      $error("halut_accel: cfg_addr_i/cfg_data_i changed while a write waited for cfg_ready_o");
      chk_fired = 1'b1;
    end
  a_pre_held: assume property (@(posedge clk_i) disable iff (!chk_en_q || chk_fired)
      pre_valid_i && !pre_ready_o |=> pre_valid_i)
    else begin
      $error("halut_accel: pre_valid_i dropped while a preload beat waited for pre_ready_o");
      chk_fired = 1'b1;
    end
  a_pre_stable: assume property (@(posedge clk_i) disable iff (!chk_en_q || chk_fired)
      pre_valid_i && !pre_ready_o |=> $stable(pre_data_i))
    else begin
      $error("halut_accel: pre_data_i changed while a preload beat waited for pre_ready_o");
      chk_fired = 1'b1;
    end

  // configuration: a write to the memories or job registers (not SWAP) goes to a bank no beat
  // in the tree reads (the cfg_ready_o rule); with Banks = 1 the host sends no beat between a
  // job's writes and its SWAP (docs/address-map.md)
  logic chk_job_write;
  assign chk_job_write = cfg_thr || cfg_lut || (cfg_ctl && (cfg_reg != halut_pkg::CtrlSwap));
  a_cfg_bank_free: assert property (@(posedge clk_i) disable iff (!chk_en_q || chk_fired)
      chk_job_write |-> !(|p_busy))
    else begin
      $error("halut_accel: a configuration write hit a bank with a beat in the tree");
      chk_fired = 1'b1;
    end
  if (Banks == 1) begin : g_chk_one_bank
    logic chk_dirty_q;  // the bank holds writes that no SWAP has made active yet
    always_ff @(posedge clk_i or negedge rst_ni) begin
      if (!rst_ni) begin
        chk_dirty_q <= 1'b0;
      end else if (swap) begin
        chk_dirty_q <= 1'b0;
      end else if (chk_job_write) begin
        chk_dirty_q <= 1'b1;
      end
    end
    a_one_bank_swap: assume property (@(posedge clk_i) disable iff (!chk_en_q || chk_fired)
        in_fire |-> !chk_dirty_q && !chk_job_write)
      else begin
        $error("halut_accel: Banks = 1: a beat was sent between a job's writes and its SWAP");
        chk_fired = 1'b1;
      end
  end

  // chip: an output beat stays offered, unchanged, until taken
  a_out_held: assert property (@(posedge clk_i) disable iff (!chk_en_q || chk_fired)
      out_valid_o && !out_ready_i |=> out_valid_o)
    else begin
      $error("halut_accel: out_valid_o dropped before out_ready_i");
      chk_fired = 1'b1;
    end
  a_out_stable: assert property (@(posedge clk_i) disable iff (!chk_en_q || chk_fired)
      out_valid_o && !out_ready_i |=> $stable(out_data_o))
    else begin
      $error("halut_accel: out_data_o changed while out_valid_o waited for out_ready_i");
      chk_fired = 1'b1;
    end

  // chip: rows in, beats out. chk_owed_q counts the output beats owed: M/OutLanes per row
  // whose last codebook was taken, less the beats taken. No beat leaves without one owed, and
  // the count always equals the rows in flight (a last codebook in a tree or accumulation
  // stage: M/OutLanes each) plus the beats left in the output buffer: no row is lost,
  // duplicated or made up between the input and the output.
  logic [31:0] chk_owed_q, chk_owed_d, chk_in_flight;
  assign chk_owed_d = chk_owed_q + ((in_fire && in_last) ? 32'(NumBeats) : 32'd0) -
                      (out_fire ? 32'd1 : 32'd0);
  always_ff @(posedge clk_i or negedge rst_ni) begin
    if (!rst_ni) begin
      chk_owed_q <= '0;
    end else begin
      chk_owed_q <= chk_owed_d;
    end
  end
  always_comb begin
    chk_in_flight = (a_v_q && a_last_q) ? 32'(NumBeats) : 32'd0;
    for (int l = 0; l < L; l++) begin
      if (p_v_q[l] && p_last_q[l]) begin
        chk_in_flight = chk_in_flight + 32'(NumBeats);
      end
    end
    if (obuf_busy_q) begin
      chk_in_flight = chk_in_flight + 32'(NumBeats) - 32'(beat_q);
    end
  end
  a_out_owed: assert property (@(posedge clk_i) disable iff (!chk_en_q || chk_fired)
      out_valid_o |-> chk_owed_q != 32'd0)
    else begin
      $error("halut_accel: an output beat without a finished row");
      chk_fired = 1'b1;
    end
  a_rows_kept: assert property (@(posedge clk_i) disable iff (!chk_en_q || chk_fired)
      chk_owed_q == chk_in_flight)
    else begin
      $error("halut_accel: rows in and output beats out disagree (a row lost or duplicated)");
      chk_fired = 1'b1;
    end

  // chip: the accumulators take a preload only when no row accumulates into them
  a_pre_load_free: assert property (@(posedge clk_i) disable iff (!chk_en_q || chk_fired)
      pre_load |-> !(adv && a_v_q && !row_done))
    else begin
      $error("halut_accel: a preload overwrote the accumulators of a row under way");
      chk_fired = 1'b1;
    end
`endif
`endif

endmodule
