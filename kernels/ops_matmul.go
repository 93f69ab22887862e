package kernels

// MatMul is C = Alpha·op(A)·op(B) + Beta·C over row-major tensors, shapes taken from the tensors:
//
//	A: [m, k], or [k, m] with TransA        (rank 3: [batch, …], or rank 2 broadcast over the batch)
//	B: [k, n], or [n, k] with TransB        (the model's y = x·Wᵀ with W [out, in] is TransB)
//	C: [m, n]                               (rank 3 [batch, m, n] for a batched product)
//
// A, B and C are each F32 or BF16 (their dtypes choose the kernel); products and sums are float32, and a
// BF16 C is rounded once when stored. A weight gradient dW += dYᵀ·X accumulates into an F32 C (Beta = 1)
// from BF16 operands.
//
// Alpha and Beta are used as given: a zero Alpha gives C = Beta·C, so set Alpha = 1 for a plain
// product. Beta == 0 overwrites C without reading it (it may hold NaN); Beta == 1 accumulates, as the
// backward products dW += dYᵀ·X do.
type MatMul struct {
	A, B, C        Tensor
	TransA, TransB bool
	Alpha, Beta    float32
}

// StridedMatMul is a product over explicit views, for operands embedded in larger buffers (a head's
// slice of a fused QKV projection, a block of rows): A, B and C give the base addresses and must hold
// every element the product touches.
//
// Matrix b of the batch uses A at element offset b·StrideA with row stride LDA (A stored M×K, or K×M
// with TransA), B at b·StrideB with row stride LDB (K×N, or N×K with TransB) and C at b·StrideC with row
// stride LDC (M×N). A zero stride broadcasts an operand over the batch; C's batch matrices must not
// overlap. Batch 0 is taken as 1.
type StridedMatMul struct {
	A, B, C                   Tensor
	TransA, TransB            bool
	M, N, K                   int
	LDA, LDB, LDC             int
	Batch                     int
	StrideA, StrideB, StrideC int
	Alpha, Beta               float32
}

// MatMul computes p.C = p.Alpha·op(p.A)·op(p.B) + p.Beta·p.C; see the MatMul type for the shapes.
func (d *Device) MatMul(p MatMul) error {
	const op = "matmul"
	if err := firstErr(d.checkFloat(op, "A", p.A, 0), d.checkFloat(op, "B", p.B, 0), d.checkFloat(op, "C", p.C, 0)); err != nil {
		return err
	}
	for _, x := range [...]struct {
		name string
		t    Tensor
	}{{"A", p.A}, {"B", p.B}, {"C", p.C}} {
		if x.t.rank != 2 && x.t.rank != 3 {
			return opErr(op, "%s %s: want rank 2 or 3", x.name, x.t)
		}
	}
	batch := 1
	for _, t := range [...]Tensor{p.A, p.B, p.C} {
		if t.rank == 3 {
			if batch != 1 && t.dims[0] != batch {
				return opErr(op, "batch sizes differ: A %s, B %s, C %s", p.A, p.B, p.C)
			}
			batch = t.dims[0]
		}
	}
	if batch > 1 && p.C.rank != 3 {
		return opErr(op, "C %s: a batched product (batch %d) needs C [batch, m, n]", p.C, batch)
	}
	ar, ac := p.A.Dim(-2), p.A.Dim(-1)
	br, bc := p.B.Dim(-2), p.B.Dim(-1)
	m, k := ar, ac
	if p.TransA {
		m, k = ac, ar
	}
	kb, n := br, bc
	if p.TransB {
		kb, n = bc, br
	}
	if kb != k {
		return opErr(op, "inner dimensions differ: op(A) is %d×%d (A %s, TransA %t), op(B) is %d×%d (B %s, TransB %t)",
			m, k, p.A, p.TransA, kb, n, p.B, p.TransB)
	}
	if p.C.Dim(-2) != m || p.C.Dim(-1) != n {
		return opErr(op, "C %s: want [%d, %d] for op(A) %d×%d times op(B) %d×%d", p.C, m, n, m, k, k, n)
	}
	sa, sb := 0, 0
	if p.A.rank == 3 {
		sa = ar * ac
	}
	if p.B.rank == 3 {
		sb = br * bc
	}
	// Leading dimensions of empty matrices are 1, as BLAS requires.
	return d.matmul(op, p.A, p.B, p.C, p.TransA, p.TransB, m, n, k, max(ac, 1), max(bc, 1), max(n, 1), batch, sa, sb, m*n,
		p.Alpha, p.Beta)
}

// MatMulStrided computes the product described by p over explicit views; see StridedMatMul.
func (d *Device) MatMulStrided(p StridedMatMul) error {
	const op = "matmul"
	if err := firstErr(d.checkFloat(op, "A", p.A, 0), d.checkFloat(op, "B", p.B, 0), d.checkFloat(op, "C", p.C, 0)); err != nil {
		return err
	}
	batch := max(p.Batch, 1)
	if p.M < 0 || p.N < 0 || p.K < 0 || p.Batch < 0 {
		return opErr(op, "negative size M=%d N=%d K=%d Batch=%d", p.M, p.N, p.K, p.Batch)
	}
	if p.StrideA < 0 || p.StrideB < 0 || p.StrideC < 0 {
		return opErr(op, "negative batch stride (A %d, B %d, C %d)", p.StrideA, p.StrideB, p.StrideC)
	}
	ar, ac := p.M, p.K
	if p.TransA {
		ar, ac = p.K, p.M
	}
	br, bc := p.K, p.N
	if p.TransB {
		br, bc = p.N, p.K
	}
	for _, x := range [...]struct {
		name            string
		t               Tensor
		rows, cols, ld  int
		stride, minCols int
	}{{"A", p.A, ar, ac, p.LDA, p.StrideA, ac}, {"B", p.B, br, bc, p.LDB, p.StrideB, bc}, {"C", p.C, p.M, p.N, p.LDC, p.StrideC, p.N}} {
		if x.ld < max(x.minCols, 1) {
			return opErr(op, "LD%s = %d is less than the %d columns of stored %s", x.name, x.ld, x.cols, x.name)
		}
		if x.rows == 0 || x.cols == 0 {
			continue
		}
		need := (batch-1)*x.stride + (x.rows-1)*x.ld + x.cols
		if x.t.Len() < need {
			return opErr(op, "%s %s has %d elements, the %d×%d view (LD %d, batch %d, stride %d) needs %d",
				x.name, x.t, x.t.Len(), x.rows, x.cols, x.ld, batch, x.stride, need)
		}
	}
	return d.matmul(op, p.A, p.B, p.C, p.TransA, p.TransB, p.M, p.N, p.K, p.LDA, p.LDB, p.LDC, batch,
		p.StrideA, p.StrideB, p.StrideC, p.Alpha, p.Beta)
}

const matmulMaxDim = 1<<31 - 1

func (d *Device) matmul(op string, A, B, C Tensor, ta, tb bool, m, n, k, lda, ldb, ldc, batch, sa, sb, sc int,
	alpha, beta float32) error {
	for _, v := range [...]int{m, n, k, lda, ldb, ldc, batch} {
		if v > matmulMaxDim {
			return opErr(op, "size %d exceeds the int32 range of the native ABI", v)
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	a := args[matmulArgs](d)
	a.transA, a.transB = matmulFlag(ta), matmulFlag(tb)
	a.m, a.n, a.k = int32(m), int32(n), int32(k)
	a.lda, a.ldb, a.ldc = int32(lda), int32(ldb), int32(ldc)
	a.batch = int32(batch)
	a.alpha, a.beta = alpha, beta
	a.strideA, a.strideB, a.strideC = int64(sa), int64(sb), int64(sc)
	a.a, a.b, a.c = A.addr(), B.addr(), C.addr()
	a.aDT, a.bDT, a.cDT = A.dtype, B.dtype, C.dtype
	if d.prof != nil {
		d.prof.pending = matmulShape{int32(m), int32(n), int32(k), int32(batch), ta, tb, beta != 0, A.dtype, B.dtype, C.dtype}
	}
	fb, fm, fn, fk := float64(batch), float64(m), float64(n), float64(k)
	ea, eb, ec := float64(A.dtype.Size()), float64(B.dtype.Size()), float64(C.dtype.Size())
	return d.run(opMatMul, 2*fm*fn*fk*fb, fb*(ea*fm*fk+eb*fk*fn+2*ec*fm*fn))
}

func matmulFlag(b bool) int32 {
	if b {
		return 1
	}
	return 0
}
