package ref

// MatMul: C[b] = alpha·op(A[b])·op(B[b]) + beta·C[b] for b < batch, row-major, with the conventions of
// serl_matmul: op(A) is m×k (A stored k×m when transA), op(B) is k×n (B stored n×k when transB), lda/ldb/
// ldc are row strides and sa/sb/sc batch strides in elements (0 broadcasts). beta == 0 does not read C.
// Sums are accumulated in float64.
func MatMul[T Float](transA, transB bool, m, n, k int, alpha T, a []T, lda, sa int, b []T, ldb, sb int,
	beta T, c []T, ldc, sc, batch int) {
	for bi := 0; bi < batch; bi++ {
		A, B, C := a[bi*sa:], b[bi*sb:], c[bi*sc:]
		for i := 0; i < m; i++ {
			for j := 0; j < n; j++ {
				var s float64
				for p := 0; p < k; p++ {
					var x, y T
					if transA {
						x = A[p*lda+i]
					} else {
						x = A[i*lda+p]
					}
					if transB {
						y = B[j*ldb+p]
					} else {
						y = B[p*ldb+j]
					}
					s += float64(x) * float64(y)
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
