package ref

// MatMul: C[b] = alpha·op(A[b])·op(B[b]) + beta·C[b] for b < batch, row-major, with the conventions of
// serl_matmul: op(A) is m×k (A stored k×m when transA), op(B) is k×n (B stored n×k when transB), lda/ldb/
// ldc are row strides and sa/sb/sc batch strides in elements (0 broadcasts). beta == 0 does not read C.
// Sums are accumulated in float64. op(A) and op(B)ᵀ are first copied out row by row, so that every dot
// product runs over two contiguous float64 rows.
func MatMul[T Float](transA, transB bool, m, n, k int, alpha T, a []T, lda, sa int, b []T, ldb, sb int,
	beta T, c []T, ldc, sc, batch int) {
	opA := make([]float64, m*k)  // op(A), m×k
	opBt := make([]float64, n*k) // op(B)ᵀ, n×k
	for bi := 0; bi < batch; bi++ {
		A, B, C := a[bi*sa:], b[bi*sb:], c[bi*sc:]
		for i := 0; i < m; i++ {
			for p := 0; p < k; p++ {
				if transA {
					opA[i*k+p] = float64(A[p*lda+i])
				} else {
					opA[i*k+p] = float64(A[i*lda+p])
				}
			}
		}
		for j := 0; j < n; j++ {
			for p := 0; p < k; p++ {
				if transB {
					opBt[j*k+p] = float64(B[j*ldb+p])
				} else {
					opBt[j*k+p] = float64(B[p*ldb+j])
				}
			}
		}
		for i := 0; i < m; i++ {
			x := opA[i*k : i*k+k]
			for j := 0; j < n; j++ {
				y := opBt[j*k : j*k+k]
				var s float64
				for p := range x {
					s += x[p] * y[p]
				}
				v := float64(alpha) * s
				if beta != 0 {
					v += float64(beta) * float64(C[i*ldc+j])
				}
				C[i*ldc+j] = T(v)
			}
		}
	}
}
