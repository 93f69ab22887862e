package kernels

// Go mirrors of the args structs of csrc/serl.h, field for field, in the same order, with the C field
// name in a `c` tag. TestABILayout compares every field's offset and size with what the library reports,
// so a drift between the header and this file fails a test instead of corrupting memory.

type deviceInfoArgs struct {
	size        uint32    `c:"size"`
	threads     int32     `c:"threads"`
	totalMemory int64     `c:"total_memory"`
	freeMemory  int64     `c:"free_memory"`
	simd        int32     `c:"simd"`
	simdCPU     int32     `c:"simd_cpu"`
	name        [128]byte `c:"name"`
}

type copyArgs struct {
	size  uint32  `c:"size"`
	kind  int32   `c:"kind"`
	bytes int64   `c:"bytes"`
	dst   uintptr `c:"dst"`
	src   uintptr `c:"src"`
}

type memsetArgs struct {
	size  uint32  `c:"size"`
	value int32   `c:"value"`
	bytes int64   `c:"bytes"`
	dst   uintptr `c:"dst"`
}

type matmulArgs struct {
	size           uint32  `c:"size"`
	transA, transB int32   `c:"trans_a,trans_b"`
	m, n, k        int32   `c:"m,n,k"`
	lda, ldb, ldc  int32   `c:"lda,ldb,ldc"`
	batch          int32   `c:"batch"`
	alpha, beta    float32 `c:"alpha,beta"`
	aDT, bDT, cDT  DType   `c:"a_dtype,b_dtype,c_dtype"`
	reserved       int32   `c:"reserved"`
	strideA        int64   `c:"stride_a"`
	strideB        int64   `c:"stride_b"`
	strideC        int64   `c:"stride_c"`
	a, b, c        uintptr `c:"a,b,c"`
}

type embeddingFwdArgs struct {
	size                uint32  `c:"size"`
	nTokens, dim, vocab int32   `c:"n_tokens,dim,vocab"`
	tableDT, outDT      DType   `c:"table_dtype,out_dtype"`
	ids, table, out     uintptr `c:"ids,table,out"`
}

type embeddingBwdArgs struct {
	size                uint32  `c:"size"`
	nTokens, dim, vocab int32   `c:"n_tokens,dim,vocab"`
	doutDT              DType   `c:"dout_dtype"`
	reserved            int32   `c:"reserved"`
	ids, dout, dtable   uintptr `c:"ids,dout,dtable"`
}

type rmsnormFwdArgs struct {
	size         uint32  `c:"size"`
	n, dim       int32   `c:"n,dim"`
	eps          float32 `c:"eps"`
	xDT, yDT     DType   `c:"x_dtype,y_dtype"`
	resDT, sumDT DType   `c:"res_dtype,sum_dtype"`
	x, w, y      uintptr `c:"x,w,y"`
	rstd         uintptr `c:"rstd"`
	res, sum     uintptr `c:"res,sum"`
}

type rmsnormBwdArgs struct {
	size            uint32  `c:"size"`
	n, dim          int32   `c:"n,dim"`
	xDT, dyDT, dxDT DType   `c:"x_dtype,dy_dtype,dx_dtype"`
	x, w, rstd, dy  uintptr `c:"x,w,rstd,dy"`
	dx, dw          uintptr `c:"dx,dw"`
}

type ropeArgs struct {
	size                             uint32  `c:"size"`
	nTokens, nHeads, headDim, rotDim int32   `c:"n_tokens,n_heads,head_dim,rot_dim"`
	bwd, accumulate                  int32   `c:"bwd,accumulate"`
	xDT, yDT                         DType   `c:"x_dtype,y_dtype"`
	reserved                         int32   `c:"reserved"`
	pos, invFreq, x, y               uintptr `c:"pos,inv_freq,x,y"`
}

type attentionFwdArgs struct {
	size                                      uint32  `c:"size"`
	nTokens, nSeqs, nHeads, nKVHeads, headDim int32   `c:"n_tokens,n_seqs,n_heads,n_kv_heads,head_dim"`
	scale                                     float32 `c:"scale"`
	qDT, kDT, vDT, outDT                      DType   `c:"q_dtype,k_dtype,v_dtype,out_dtype"`
	maxLen                                    int32   `c:"max_len"`
	cuSeqlens, q, k, v, out, lse              uintptr `c:"cu_seqlens,q,k,v,out,lse"`
}

type attentionBwdArgs struct {
	size                                      uint32  `c:"size"`
	nTokens, nSeqs, nHeads, nKVHeads, headDim int32   `c:"n_tokens,n_seqs,n_heads,n_kv_heads,head_dim"`
	scale                                     float32 `c:"scale"`
	qDT, kDT, vDT, outDT, doutDT              DType   `c:"q_dtype,k_dtype,v_dtype,out_dtype,dout_dtype"`
	dqDT, dkDT, dvDT                          DType   `c:"dq_dtype,dk_dtype,dv_dtype"`
	maxLen                                    int32   `c:"max_len"`
	cuSeqlens, q, k, v, out, lse, dout        uintptr `c:"cu_seqlens,q,k,v,out,lse,dout"`
	dq, dk, dv                                uintptr `c:"dq,dk,dv"`
}

type kvAppendArgs struct {
	size                                           uint32  `c:"size"`
	nTokens, nKVHeads, headDim, blockSize, nBlocks int32   `c:"n_tokens,n_kv_heads,head_dim,block_size,n_blocks"`
	kvDT, cacheDT                                  DType   `c:"kv_dtype,cache_dtype"`
	slots, k, v, kCache, vCache                    uintptr `c:"slots,k,v,k_cache,v_cache"`
}

type ropeAppendArgs struct {
	size                                                           uint32  `c:"size"`
	nTokens, nHeads, nKVHeads, headDim, rotDim, blockSize, nBlocks int32   `c:"n_tokens,n_heads,n_kv_heads,head_dim,rot_dim,block_size,n_blocks"`
	qDT, kvDT, biasDT, cacheDT                                     DType   `c:"q_dtype,kv_dtype,bias_dtype,cache_dtype"`
	pos, invFreq, slots                                            uintptr `c:"pos,inv_freq,slots"`
	q, k, v                                                        uintptr `c:"q,k,v"`
	bq, bk, bv                                                     uintptr `c:"bq,bk,bv"`
	kCache, vCache                                                 uintptr `c:"k_cache,v_cache"`
}

type decodeAttentionArgs struct {
	size                                                          uint32  `c:"size"`
	nSeqs, nHeads, nKVHeads, headDim, blockSize, nBlocks, maxBlks int32   `c:"n_seqs,n_heads,n_kv_heads,head_dim,block_size,n_blocks,max_blocks"`
	scale                                                         float32 `c:"scale"`
	qDT, cacheDT, outDT                                           DType   `c:"q_dtype,cache_dtype,out_dtype"`
	blockTable, seqLens, q, kCache, vCache, out                   uintptr `c:"block_table,seq_lens,q,k_cache,v_cache,out"`
}

type swigluFwdArgs struct {
	size                uint32  `c:"size"`
	gateDT, upDT, outDT DType   `c:"gate_dtype,up_dtype,out_dtype"`
	n                   int64   `c:"n"`
	gate, up, out       uintptr `c:"gate,up,out"`
}

type swigluBwdArgs struct {
	size                       uint32  `c:"size"`
	gateDT, upDT, doutDT       DType   `c:"gate_dtype,up_dtype,dout_dtype"`
	dgateDT, dupDT             DType   `c:"dgate_dtype,dup_dtype"`
	n                          int64   `c:"n"`
	gate, up, dout, dgate, dup uintptr `c:"gate,up,dout,dgate,dup"`
}

type biasAddArgs struct {
	size        uint32  `c:"size"`
	n, dim      int32   `c:"n,dim"`
	biasDT, yDT DType   `c:"bias_dtype,y_dtype"`
	reserved    int32   `c:"reserved"`
	bias, y     uintptr `c:"bias,y"`
}

type biasBwdArgs struct {
	size      uint32  `c:"size"`
	n, dim    int32   `c:"n,dim"`
	dyDT      DType   `c:"dy_dtype"`
	dy, dbias uintptr `c:"dy,dbias"`
}

type addArgs struct {
	size          uint32  `c:"size"`
	alpha         float32 `c:"alpha"`
	xDT, yDT, oDT DType   `c:"x_dtype,y_dtype,out_dtype"`
	reserved      int32   `c:"reserved"`
	n             int64   `c:"n"`
	x, y, out     uintptr `c:"x,y,out"`
}

type scaleArgs struct {
	size     uint32  `c:"size"`
	alpha    float32 `c:"alpha"`
	xDT, oDT DType   `c:"x_dtype,out_dtype"`
	n        int64   `c:"n"`
	x, out   uintptr `c:"x,out"`
}

type castArgs struct {
	size         uint32  `c:"size"`
	srcDT, dstDT DType   `c:"src_dtype,dst_dtype"`
	reserved     int32   `c:"reserved"`
	n            int64   `c:"n"`
	src, dst     uintptr `c:"src,dst"`
}

type logprobFwdArgs struct {
	size                           uint32  `c:"size"`
	n, vocab, ld                   int32   `c:"n,vocab,ld"`
	invTemp                        float32 `c:"inv_temp"`
	ignoreNegative                 int32   `c:"ignore_negative"`
	logitsDT                       DType   `c:"logits_dtype"`
	reserved                       int32   `c:"reserved"`
	logits, targets, logp, entropy uintptr `c:"logits,targets,logp,entropy"`
	lse                            uintptr `c:"lse"`
}

type logprobBwdArgs struct {
	size                                uint32  `c:"size"`
	n, vocab, ld                        int32   `c:"n,vocab,ld"`
	invTemp                             float32 `c:"inv_temp"`
	ignoreNegative                      int32   `c:"ignore_negative"`
	logitsDT, dlogitsDT                 DType   `c:"logits_dtype,dlogits_dtype"`
	logits, targets, lse, coef, dlogits uintptr `c:"logits,targets,lse,coef,dlogits"`
}

type sampleArgs struct {
	size                               uint32  `c:"size"`
	n, vocab, ld                       int32   `c:"n,vocab,ld"`
	ldHist, nBan                       int32   `c:"ld_hist,n_ban"`
	logitsDT                           DType   `c:"logits_dtype"`
	reserved                           int32   `c:"reserved"`
	logits, temperature, topK, topP    uintptr `c:"logits,temperature,top_k,top_p"`
	presencePenalty, hist, histLen     uintptr `c:"presence_penalty,hist,hist_len"`
	banIDs, banRows                    uintptr `c:"ban_ids,ban_rows"`
	seeds, seqIDs, steps, tokens, logp uintptr `c:"seeds,seq_ids,steps,tokens,logp"`
}

type decodeAdvanceArgs struct {
	size                         uint32  `c:"size"`
	n, blockSize, maxBlocks      int32   `c:"n,block_size,max_blocks"`
	ldHist, maxPatch             int32   `c:"ld_hist,max_patch"`
	tokens, patch, table         uintptr `c:"tokens,patch,table"`
	ids, pos, seqLens, slots     uintptr `c:"ids,pos,seq_lens,slots"`
	steps, hist, banRows, minNew uintptr `c:"steps,hist,ban_rows,min_new"`
}

type whitenArgs struct {
	size              uint32  `c:"size"`
	stdNorm           int32   `c:"std_norm"`
	n                 int64   `c:"n"`
	eps               float32 `c:"eps"`
	mode              int32   `c:"mode"`
	x, mask, y, stats uintptr `c:"x,mask,y,stats"`
}

type groupBaselineArgs struct {
	size               uint32  `c:"size"`
	mode               int32   `c:"mode"`
	nGroups, groupSize int32   `c:"n_groups,group_size"`
	eps                float32 `c:"eps"`
	reserved           int32   `c:"reserved"`
	r, y               uintptr `c:"r,y"`
}

// RL step ops (serl.h, "RL step").

type gatherActionsArgs struct {
	size                     uint32  `c:"size"`
	nSeqs, nTokens, nActions int32   `c:"n_seqs,n_tokens,n_actions"`
	pos, actCu, src, dst     uintptr `c:"pos,act_cu,src,dst"`
}

type klReturnsArgs struct {
	size                                     uint32  `c:"size"`
	nSeqs, nActions                          int32   `c:"n_seqs,n_actions"`
	beta                                     float32 `c:"beta"`
	actCu, logpOld, logpRef, reward, ret, kl uintptr `c:"act_cu,logp_old,logp_ref,reward,ret,kl"`
}

type ppoCoefArgs struct {
	size                               uint32  `c:"size"`
	nSeqs, nTokens, nActions, stepSeqs int32   `c:"n_seqs,n_tokens,n_actions,step_seqs"`
	grpo                               int32   `c:"grpo"`
	clipEps, klCoef                    float32 `c:"clip_eps,kl_coef"`
	tokLo, tokHi                       int32   `c:"tok_lo,tok_hi"`
	pos, actCu, logp, logpOld, logpRef uintptr `c:"pos,act_cu,logp,logp_old,logp_ref"`
	adv, coef, sums                    uintptr `c:"adv,coef,sums"`
}

type gradNormArgs struct {
	size    uint32  `c:"size"`
	maxNorm float32 `c:"max_norm"`
	n       int64   `c:"n"`
	g, out  uintptr `c:"g,out"`
}

type adamwArgs struct {
	size                                          uint32  `c:"size"`
	step                                          int32   `c:"step"`
	n                                             int64   `c:"n"`
	lr, beta1, beta2, eps, weightDecay, gradScale float32 `c:"lr,beta1,beta2,eps,weight_decay,grad_scale"`
	maxNorm                                       float32 `c:"max_norm"`
	reserved                                      int32   `c:"reserved"`
	p, g, m, v                                    uintptr `c:"p,g,m,v"`
	pBF16, gradNorm                               uintptr `c:"p_bf16,grad_norm"`
}

type ncclUniqueIDArgs struct {
	size     uint32  `c:"size"`
	reserved int32   `c:"reserved"`
	id       uintptr `c:"id"`
}

type ncclInitArgs struct {
	size         uint32  `c:"size"`
	rank, nranks int32   `c:"rank,nranks"`
	reserved     int32   `c:"reserved"`
	id, comm     uintptr `c:"id,comm"`
}

type ncclAllReduceArgs struct {
	size     uint32  `c:"size"`
	reserved int32   `c:"reserved"`
	n        int64   `c:"n"`
	comm, x  uintptr `c:"comm,x"`
}

type ncclBroadcastArgs struct {
	size    uint32  `c:"size"`
	root    int32   `c:"root"`
	bytes   int64   `c:"bytes"`
	comm, x uintptr `c:"comm,x"`
}

type ncclPollArgs struct {
	size       uint32  `c:"size"`
	reserved   int32   `c:"reserved"`
	comm, done uintptr `c:"comm,done"`
}

type ncclFreeArgs struct {
	size  uint32  `c:"size"`
	abort int32   `c:"abort"`
	comm  uintptr `c:"comm"`
}

// abiStructs maps each C struct name to a zero value of its mirror, for the layout test.
var abiStructs = map[string]any{
	"serl_device_info_args":      deviceInfoArgs{},
	"serl_copy_args":             copyArgs{},
	"serl_memset_args":           memsetArgs{},
	"serl_matmul_args":           matmulArgs{},
	"serl_embedding_fwd_args":    embeddingFwdArgs{},
	"serl_embedding_bwd_args":    embeddingBwdArgs{},
	"serl_rmsnorm_fwd_args":      rmsnormFwdArgs{},
	"serl_rmsnorm_bwd_args":      rmsnormBwdArgs{},
	"serl_rope_args":             ropeArgs{},
	"serl_attention_fwd_args":    attentionFwdArgs{},
	"serl_attention_bwd_args":    attentionBwdArgs{},
	"serl_kv_append_args":        kvAppendArgs{},
	"serl_rope_append_args":      ropeAppendArgs{},
	"serl_decode_attention_args": decodeAttentionArgs{},
	"serl_swiglu_fwd_args":       swigluFwdArgs{},
	"serl_swiglu_bwd_args":       swigluBwdArgs{},
	"serl_bias_add_args":         biasAddArgs{},
	"serl_bias_bwd_args":         biasBwdArgs{},
	"serl_add_args":              addArgs{},
	"serl_scale_args":            scaleArgs{},
	"serl_cast_args":             castArgs{},
	"serl_logprob_fwd_args":      logprobFwdArgs{},
	"serl_logprob_bwd_args":      logprobBwdArgs{},
	"serl_sample_args":           sampleArgs{},
	"serl_decode_advance_args":   decodeAdvanceArgs{},
	"serl_whiten_args":           whitenArgs{},
	"serl_group_baseline_args":   groupBaselineArgs{},
	"serl_grad_norm_args":        gradNormArgs{},
	"serl_gather_actions_args":   gatherActionsArgs{},
	"serl_kl_returns_args":       klReturnsArgs{},
	"serl_ppo_coef_args":         ppoCoefArgs{},
	"serl_adamw_args":            adamwArgs{},
	"serl_nccl_unique_id_args":   ncclUniqueIDArgs{},
	"serl_nccl_init_args":        ncclInitArgs{},
	"serl_nccl_all_reduce_args":  ncclAllReduceArgs{},
	"serl_nccl_broadcast_args":   ncclBroadcastArgs{},
	"serl_nccl_poll_args":        ncclPollArgs{},
	"serl_nccl_free_args":        ncclFreeArgs{},
}
