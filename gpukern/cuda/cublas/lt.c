// cuBLASLt through dlopen, as shim.c does cuBLAS: the GEMM of lf_cublas_matmul_bf16 with an
// algorithm picked from cuBLASLt's heuristic (Handle.Plan), which the backend picks by timing.
#include <dlfcn.h>
#include <stddef.h>
#include <stdint.h>
#include "shim.h"

// Values of cuBLASLt enums used below (stable across cuBLAS 11 to 13; testdata/ltcheck.c
// checks them against cublasLt.h).
enum {
	LT_OP_N = 0,
	LT_OP_T = 1,
	LT_R_32F = 0,
	LT_R_16BF = 14,
	LT_COMPUTE_32F = 68,
	LT_DESC_TRANSA = 3,        // CUBLASLT_MATMUL_DESC_TRANSA, an int32_t
	LT_DESC_TRANSB = 4,        // CUBLASLT_MATMUL_DESC_TRANSB
	LT_PREF_MAX_WORKSPACE = 1, // CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, a uint64_t
	LT_CAP_SPLITK = 0,         // CUBLASLT_ALGO_CAP_SPLITK_SUPPORT, an int32_t
	LT_CAP_REDUCTION = 1,      // CUBLASLT_ALGO_CAP_REDUCTION_SCHEME_MASK, a uint32_t
	LT_CONFIG_SPLITK = 2,      // CUBLASLT_ALGO_CONFIG_SPLITK_NUM, an int32_t
	LT_CONFIG_REDUCTION = 3,   // CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME, a uint32_t
	LT_REDUCE_INPLACE = 1,     // CUBLASLT_REDUCTION_SCHEME_INPLACE
	LT_REDUCE_COMPUTE = 2,     // CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE
	LT_REDUCE_OUTPUT = 4,      // CUBLASLT_REDUCTION_SCHEME_OUTPUT_TYPE
};

typedef int (*lt_create_fn)(void **);
typedef int (*lt_destroy_fn)(void *);
typedef int (*lt_desc_create_fn)(void **, int, int);
typedef int (*lt_set_fn)(void *, int, const void *, size_t);
typedef int (*lt_layout_create_fn)(void **, int, uint64_t, uint64_t, int64_t);
typedef int (*lt_heuristic_fn)(void *, void *, void *, void *, void *, void *, void *, int, lf_lt_result *, int *);
typedef int (*lt_algo_get_fn)(const lf_lt_algo *, int, void *, size_t, size_t *);
typedef int (*lt_algo_set_fn)(lf_lt_algo *, int, const void *, size_t);
typedef int (*lt_check_fn)(void *, void *, void *, void *, void *, void *, const lf_lt_algo *, lf_lt_result *);
typedef int (*lt_matmul_fn)(void *, void *, const void *, const void *, void *, const void *, void *, const void *,
                            const void *, void *, void *, void *, const lf_lt_algo *, void *, size_t, void *);

static void *lt_lib;
static lt_create_fn lt_create, lt_pref_create;
static lt_destroy_fn lt_destroy, lt_desc_destroy, lt_layout_destroy, lt_pref_destroy;
static lt_desc_create_fn lt_desc_create;
static lt_set_fn lt_desc_set, lt_pref_set;
static lt_layout_create_fn lt_layout_create;
static lt_heuristic_fn lt_heuristic;
static lt_matmul_fn lt_matmul;
static lt_algo_get_fn lt_cap_get, lt_config_get;
static lt_algo_set_fn lt_config_set;
static lt_check_fn lt_check;

int lf_cublaslt_open(const char *path) {
	static const char *const names[] = {
	    "cublasLtCreate", "cublasLtDestroy", "cublasLtMatmulDescCreate", "cublasLtMatmulDescDestroy",
	    "cublasLtMatmulDescSetAttribute", "cublasLtMatrixLayoutCreate", "cublasLtMatrixLayoutDestroy",
	    "cublasLtMatmulPreferenceCreate", "cublasLtMatmulPreferenceDestroy", "cublasLtMatmulPreferenceSetAttribute",
	    "cublasLtMatmulAlgoGetHeuristic", "cublasLtMatmul", "cublasLtMatmulAlgoCapGetAttribute",
	    "cublasLtMatmulAlgoConfigGetAttribute", "cublasLtMatmulAlgoConfigSetAttribute", "cublasLtMatmulAlgoCheck"};
	void **syms[] = {(void **)&lt_create,       (void **)&lt_destroy,       (void **)&lt_desc_create,
	                 (void **)&lt_desc_destroy, (void **)&lt_desc_set,      (void **)&lt_layout_create,
	                 (void **)&lt_layout_destroy, (void **)&lt_pref_create, (void **)&lt_pref_destroy,
	                 (void **)&lt_pref_set,     (void **)&lt_heuristic,     (void **)&lt_matmul,
	                 (void **)&lt_cap_get,      (void **)&lt_config_get,    (void **)&lt_config_set,
	                 (void **)&lt_check};
	return lf_dlopen_syms(path, &lt_lib, names, syms, sizeof names / sizeof names[0]);
}

int lf_cublaslt_create(void **lt) { return lt_create(lt); }

int lf_cublaslt_destroy(void *lt) { return lt_destroy(lt); }

// The layouts of lf_cublas_matmul_bf16 (column-major outᵀ[n,m] = wᵀ·x): w stored [k,n] and
// transposed, x [k,m], out [n,m] in fp32.
int lf_cublaslt_plan(lf_lt_plan *p, int m, int n, int k) {
	const int32_t t = LT_OP_T, nt = LT_OP_N;
	int rc = lt_desc_create(&p->desc, LT_COMPUTE_32F, LT_R_32F);
	if (rc == 0) {
		rc = lt_desc_set(p->desc, LT_DESC_TRANSA, &t, sizeof t);
	}
	if (rc == 0) {
		rc = lt_desc_set(p->desc, LT_DESC_TRANSB, &nt, sizeof nt);
	}
	if (rc == 0) {
		rc = lt_layout_create(&p->a, LT_R_16BF, (uint64_t)k, (uint64_t)n, k);
	}
	if (rc == 0) {
		rc = lt_layout_create(&p->b, LT_R_16BF, (uint64_t)k, (uint64_t)m, k);
	}
	if (rc == 0) {
		rc = lt_layout_create(&p->c, LT_R_32F, (uint64_t)n, (uint64_t)m, n);
	}
	if (rc != 0) {
		lf_cublaslt_plan_destroy(p);
	}
	return rc;
}

void lf_cublaslt_plan_destroy(lf_lt_plan *p) {
	if (p->desc) {
		lt_desc_destroy(p->desc);
	}
	void *layouts[3] = {p->a, p->b, p->c};
	for (int i = 0; i < 3; i++) {
		if (layouts[i]) {
			lt_layout_destroy(layouts[i]);
		}
	}
	p->desc = p->a = p->b = p->c = NULL;
}

// Up to max of the heuristic's algorithms for p that need at most workspace bytes, best first
// by its own guess; *count says how many it gave (each with a state: 0 where usable).
int lf_cublaslt_algos(void *lt, const lf_lt_plan *p, size_t workspace, lf_lt_result *res, int max, int *count) {
	void *pref = NULL;
	const uint64_t ws = workspace;
	int rc = lt_pref_create(&pref);
	if (rc == 0) {
		rc = lt_pref_set(pref, LT_PREF_MAX_WORKSPACE, &ws, sizeof ws);
	}
	if (rc == 0) {
		rc = lt_heuristic(lt, p->desc, p->a, p->b, p->c, p->c, pref, max, res, count);
	}
	if (pref) {
		lt_pref_destroy(pref);
	}
	return rc;
}

// *out = algo with its k split in splits parts (cuBLASLt's split-K), the parts added in place,
// in fp32 or in the output type, the first of these that the algorithm supports and that
// passes cuBLASLt's check for p within workspace bytes: 0; 1 where the algorithm cannot split
// k, splits it that way already, or no way of adding the parts passes; else cuBLASLt's status.
int lf_cublaslt_splitk(void *lt, const lf_lt_plan *p, const lf_lt_algo *algo, int splits, size_t workspace,
                       lf_lt_algo *out) {
	int32_t support = 0, current = 1;
	uint32_t mask = 0;
	size_t n = 0;
	int rc = lt_cap_get(algo, LT_CAP_SPLITK, &support, sizeof support, &n);
	if (rc == 0) {
		rc = lt_config_get(algo, LT_CONFIG_SPLITK, &current, sizeof current, &n);
	}
	if (rc == 0) {
		rc = lt_cap_get(algo, LT_CAP_REDUCTION, &mask, sizeof mask, &n);
	}
	if (rc != 0 || !support || current == splits) {
		return rc != 0 ? rc : 1;
	}
	static const uint32_t schemes[] = {LT_REDUCE_INPLACE, LT_REDUCE_COMPUTE, LT_REDUCE_OUTPUT};
	const int32_t s = splits;
	for (int i = 0; i < 3; i++) {
		lf_lt_result res = {0};
		*out = *algo;
		if ((mask & schemes[i]) && lt_config_set(out, LT_CONFIG_SPLITK, &s, sizeof s) == 0 &&
		    lt_config_set(out, LT_CONFIG_REDUCTION, &schemes[i], sizeof schemes[i]) == 0 &&
		    lt_check(lt, p->desc, p->a, p->b, p->c, p->c, out, &res) == 0 && res.state == 0 &&
		    res.workspace <= workspace) {
			return 0;
		}
	}
	return 1;
}

// out = x·wᵀ (+ out where beta is 1) with algo, on stream, in workspace: alpha and beta are
// host floats (the default pointer mode).
int lf_cublaslt_matmul(void *lt, const lf_lt_plan *p, const lf_lt_algo *algo, uintptr_t out, uintptr_t x, uintptr_t w,
                       float beta, uintptr_t workspace, size_t bytes, uintptr_t stream) {
	const float alpha = 1.0f;
	return lt_matmul(lt, p->desc, &alpha, (const void *)w, p->a, (const void *)x, p->b, &beta, (const void *)out, p->c,
	                 (void *)out, p->c, algo, (void *)workspace, bytes, (void *)stream);
}
