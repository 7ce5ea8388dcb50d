//go:build cudaemu

// The CPU emulator's scheduler and table of kernels (emu.go). A block's threads are fibers
// run round-robin, each until it waits at a barrier (__syncthreads, or a warp's shuffle) or
// ends; a barrier opens once every thread of its block or warp that has not ended is there.
// A barrier that can never open (threads ended or waiting elsewhere) is reported as a
// deadlock rather than hanging, as a shuffle reading a lane that has ended is reported.
// Kernels that the table marks barrier-free run their threads one after another as plain
// calls, which is much faster; one that reaches a barrier all the same is reported.
#include "emu.h"

#include <cstdlib>
#include <numeric>
#include <utility>
#include <vector>
#if !defined(__x86_64__)
#include <ucontext.h>
#endif

uint3 threadIdx, blockIdx;
dim3 blockDim, gridDim;
unsigned char *emu_dyn_smem;

namespace {

// A fiber's saved context, and the switch between two. On x86-64 a switch saves and restores
// the callee-saved registers and the floating-point control words on the stack (a few ns);
// elsewhere ucontext, which also makes two system calls per switch.
#if defined(__x86_64__)
struct Context {
	void *sp;
};
extern "C" void emu_switch(void **save, void *to);
asm(R"(
	.pushsection .text
	.globl emu_switch
	.type emu_switch, @function
emu_switch:
	pushq %rbp
	pushq %rbx
	pushq %r12
	pushq %r13
	pushq %r14
	pushq %r15
	subq $8, %rsp
	stmxcsr (%rsp)
	fnstcw 4(%rsp)
	movq %rsp, (%rdi)
	movq %rsi, %rsp
	ldmxcsr (%rsp)
	fldcw 4(%rsp)
	addq $8, %rsp
	popq %r15
	popq %r14
	popq %r13
	popq %r12
	popq %rbx
	popq %rbp
	ret
	.size emu_switch, .-emu_switch
	.popsection
)");
void raw_switch(Context &from, Context &to) { emu_switch(&from.sp, to.sp); }
// start makes c run f on the stack [stack, stack+size) at the next switch to it; f must
// never return.
void start(Context &c, char *stack, size_t size, void (*f)()) {
	uintptr_t top = ((uintptr_t)stack + size) & ~(uintptr_t)15;
	void **sp = (void **)top;
	*--sp = nullptr;      // f's return address (f never returns)
	*--sp = (void *)f;    // where emu_switch's ret goes
	for (int i = 0; i < 6; i++) {
		*--sp = nullptr; // rbp, rbx, r12-r15
	}
	sp--;
	uint32_t mxcsr;
	uint16_t fpucw;
	asm volatile("stmxcsr %0; fnstcw %1" : "=m"(mxcsr), "=m"(fpucw));
	memcpy(sp, &mxcsr, 4);
	memcpy((char *)sp + 4, &fpucw, 2);
	c.sp = sp;
}
#else
struct Context {
	ucontext_t uc;
};
void raw_switch(Context &from, Context &to) { swapcontext(&from.uc, &to.uc); }
void start(Context &c, char *stack, size_t size, void (*f)()) {
	getcontext(&c.uc);
	c.uc.uc_stack.ss_sp = stack;
	c.uc.uc_stack.ss_size = size;
	c.uc.uc_link = nullptr;
	makecontext(&c.uc, f, 0);
}
#endif

// Under AddressSanitizer (go test -asan: kernels' reads and writes past their buffers are
// reported, as compute-sanitizer does on a GPU) every switch tells it which stack comes next.
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#endif

struct Stack {
	const void *bottom;
	size_t size;
};

// switch_to switches from the running context to another, whose stack is to_stack; a fiber
// that has ended says so (ending), so that the sanitizer drops what it kept for it.
void switch_to(Context &from, Context &to, Stack to_stack, bool ending = false) {
#if defined(__SANITIZE_ADDRESS__)
	void *fake = nullptr;
	__sanitizer_start_switch_fiber(ending ? nullptr : &fake, to_stack.bottom, to_stack.size);
	raw_switch(from, to);
	__sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#else
	(void)to_stack;
	(void)ending;
	raw_switch(from, to);
#endif
}

// started is called first thing on a fiber's stack: the sanitizer learns the stack it came
// from, the scheduler's.
void started(Stack *sched) {
#if defined(__SANITIZE_ADDRESS__)
	__sanitizer_finish_switch_fiber(nullptr, &sched->bottom, &sched->size);
#else
	(void)sched;
#endif
}

const size_t stack_bytes = 256 << 10;
const int max_threads = 1024;

struct Barrier {
	int arrived, expected;
	const char *site; // where the threads waiting now called __syncthreads (null for shuffles)
};

struct Fiber {
	Context ctx;
	char *stack = nullptr;
	Barrier *waiting = nullptr;
	bool done = false;
};

// The block being run.
struct {
	std::vector<Fiber> fibers; // grows to the largest block; stacks are kept
	int n, cur;
	Barrier all, warps[max_threads / 32];
	uint64_t slot[max_threads]; // each thread's value in a shuffle
	struct {
		unsigned a[4], b[2];
	} mma[max_threads]; // each thread's fragments in an mma_bf16
	Context sched;
	Stack sched_stack;
	void (*body)(const uint64_t *);
	const uint64_t *args;
	const char *err; // the launch's first failure
	bool direct;     // threads run as plain calls: a barrier is an error
} blk;

void fail(const char *msg) {
	if (!blk.err) {
		blk.err = msg;
	}
}

void release(Barrier &b) {
	b.arrived = 0;
	for (int i = 0; i < blk.n; i++) {
		if (blk.fibers[i].waiting == &b) {
			blk.fibers[i].waiting = nullptr;
		}
	}
}

void arrive(Barrier &b) {
	if (++b.arrived == b.expected) {
		release(b);
		return;
	}
	Fiber &f = blk.fibers[blk.cur];
	f.waiting = &b;
	switch_to(f.ctx, blk.sched, blk.sched_stack);
}

// leave takes an ended thread out of b, which may then open.
void leave(Barrier &b) {
	b.expected--;
	if (b.arrived > 0 && b.arrived == b.expected) {
		release(b);
	}
}

// end_thread ends the running thread: it leaves its barriers, and its fiber never resumes.
[[noreturn]] void end_thread() {
	int t = blk.cur;
	Fiber &f = blk.fibers[t];
	f.done = true;
	leave(blk.all);
	leave(blk.warps[t >> 5]);
	switch_to(f.ctx, blk.sched, blk.sched_stack, true); // for good: the next block starts the fiber afresh
	abort();
}

void entry() {
	started(&blk.sched_stack);
	blk.body(blk.args);
	end_thread();
}

void run_direct() {
	for (int i = 0; i < blk.n && !blk.err; i++) {
		blk.cur = i;
		threadIdx = uint3{(unsigned)i, 0, 0};
		blk.body(blk.args);
	}
}

void run_block() {
	int n = blk.n;
	for (int i = 0; i < n; i++) {
		Fiber &f = blk.fibers[i];
		if (!f.stack) {
			f.stack = (char *)malloc(stack_bytes);
			if (!f.stack) {
				fail("out of memory for thread stacks");
				return;
			}
		}
		start(f.ctx, f.stack, stack_bytes, entry);
		f.waiting = nullptr;
		f.done = false;
	}
	blk.all = Barrier{0, n, nullptr};
	for (int w = 0; w * 32 < n; w++) {
		blk.warps[w] = Barrier{0, min(32, n - w * 32), nullptr};
	}
	for (;;) {
		bool ran = false, all_done = true;
		for (int i = 0; i < n; i++) {
			Fiber &f = blk.fibers[i];
			if (f.done) {
				continue;
			}
			all_done = false;
			if (f.waiting) {
				continue;
			}
			blk.cur = i;
			threadIdx = uint3{(unsigned)i, 0, 0};
			switch_to(blk.sched, f.ctx, Stack{f.stack, stack_bytes});
			ran = true;
		}
		if (all_done) {
			return;
		}
		if (!ran) {
			fail("deadlock: threads wait at a barrier that the others of their block or warp never reach");
			return;
		}
	}
}

} // namespace

static const char *const not_barrier_free = "the kernel reaches a barrier but is marked barrier-free in emu.cpp's table";

void emu_syncthreads(const char *site) {
	if (blk.direct) {
		fail(not_barrier_free);
		return;
	}
	Barrier &b = blk.all;
	if (b.arrived == 0) {
		b.site = site;
	} else if (strcmp(b.site, site) != 0) {
		fail("threads of a block wait at different __syncthreads (in code that diverges)");
	}
	arrive(b);
}

uint64_t emu_shfl(uint64_t v, int src) {
	if (blk.direct) {
		fail(not_barrier_free);
		return v;
	}
	int t = threadIdx.x, s = (t & ~31) + src; // threadIdx changes while this fiber waits
	blk.slot[t] = v;
	arrive(blk.warps[t >> 5]);
	uint64_t r = v;
	if (s >= blk.n || blk.fibers[s].done) {
		fail("a shuffle reads a lane that has ended");
	} else {
		r = blk.slot[s];
	}
	arrive(blk.warps[t >> 5]); // no lane writes its slot again before every lane has read
	return r;
}

// The fragments' layout is PTX's "Matrix Fragments for mma.m16n8k16 with floating point
// type": lane l (group g = l/4, t = l%4) holds a's rows g and g+8 at columns 2t, 2t+1 (a[0],
// a[1]) and 2t+8, 2t+9 (a[2], a[3]), b's column g at rows 2t, 2t+1 (b[0]) and 2t+8, 2t+9
// (b[1]), the lower index in the low half of a word; and d's rows g (d[0], d[1]) and g+8
// (d[2], d[3]) at columns 2t and 2t+1.
namespace {
float bf16_word_lo(unsigned w) { return __uint_as_float(w << 16); }
float bf16_word_hi(unsigned w) { return __uint_as_float(w & 0xffff0000u); }
float mma_a(int lane0, int row, int col) {
	int l = lane0 + (row & 7) * 4 + (col & 7) / 2, reg = (row >= 8) + 2 * (col >= 8);
	unsigned w = blk.mma[l].a[reg];
	return col & 1 ? bf16_word_hi(w) : bf16_word_lo(w);
}
float mma_b(int lane0, int row, int col) {
	int l = lane0 + col * 4 + (row & 7) / 2;
	unsigned w = blk.mma[l].b[row >= 8];
	return row & 1 ? bf16_word_hi(w) : bf16_word_lo(w);
}
} // namespace

void mma_bf16(float d[4], const unsigned a[4], const unsigned b[2]) {
	if (blk.direct) {
		fail(not_barrier_free);
		return;
	}
	int t = threadIdx.x, lane0 = t & ~31; // threadIdx changes while this fiber waits
	memcpy(blk.mma[t].a, a, sizeof blk.mma[t].a);
	memcpy(blk.mma[t].b, b, sizeof blk.mma[t].b);
	arrive(blk.warps[t >> 5]);
	for (int l = lane0; l < lane0 + 32; l++) {
		if (l >= blk.n || blk.fibers[l].done) {
			fail("an mma_bf16 without every lane of the warp");
		}
	}
	int g = (t & 31) / 4, c = 2 * (t & 3);
	for (int i = 0; i < 4; i++) {
		int row = g + 8 * (i / 2), col = c + (i & 1);
		float sum = d[i];
		for (int k = 0; k < 16; k++) {
			sum += mma_a(lane0, row, k) * mma_b(lane0, k, col);
		}
		d[i] = sum;
	}
	arrive(blk.warps[t >> 5]); // no lane writes its fragments again before every lane has read
}

// Fails the launch and ends the calling thread.
[[noreturn]] void fail_thread(const char *msg) {
	fail(msg);
	if (blk.direct) {
		abort(); // a barrier-free kernel runs as plain calls: there is no fiber to end
	}
	end_thread();
}

void __trap() { fail_thread("a thread trapped"); }

void emu_full_mask(unsigned mask) {
	if (mask != 0xffffffffu) {
		fail("a shuffle with a partial lane mask (not emulated)");
	}
}

// Every kernel file, each in a namespace of its own with the prelude it is compiled with.
namespace k_attention {
#include "common.cuh"
#include "attention.cu"
} // namespace k_attention
namespace k_elementwise {
#include "common.cuh"
#include "elementwise.cu"
} // namespace k_elementwise
namespace k_gemm {
#include "common.cuh"
#include "gemm.cu"
} // namespace k_gemm
namespace k_gemm_lean {
#include "common.cuh"
#include "gemm_lean.cu"
} // namespace k_gemm_lean
namespace k_lora {
#include "common.cuh"
#include "lora.cu"
} // namespace k_lora
namespace k_rope_kv {
#include "common.cuh"
#include "rope_kv.cu"
} // namespace k_rope_kv
namespace k_sample {
#include "common.cuh"
#include "sample.cu"
} // namespace k_sample

// The emulator's own tests' kernels (emu_test.go): those that break the rules must be reported,
// not hang or pass.
namespace k_emu {
// Lane 0 waits at __syncthreads while the others wait for its shuffle.
extern "C" __global__ void emu_deadlock(int *out) {
	if (threadIdx.x == 0) {
		__syncthreads();
	} else {
		out[threadIdx.x] = __shfl_sync(0xffffffffu, (int)threadIdx.x, 0);
	}
}
// Lane 0 ends before the others read its value.
extern "C" __global__ void emu_shuffle_ended(int *out) {
	if (threadIdx.x != 0) {
		out[threadIdx.x] = __shfl_sync(0xffffffffu, (int)threadIdx.x, 0);
	}
}
// Marked barrier-free in the table below.
extern "C" __global__ void emu_unmarked_barrier(int *out) {
	__syncthreads();
	out[threadIdx.x] = 1;
}
extern "C" __global__ void emu_partial_mask(int *out) {
	out[threadIdx.x] = __shfl_sync(0xffffu, (int)threadIdx.x, 0);
}
// One thread traps.
extern "C" __global__ void emu_trap(int *out) {
	if (threadIdx.x == 5) {
		__trap();
	}
	out[threadIdx.x] = 1;
}
// The block's threads wait at two different barriers.
extern "C" __global__ void emu_divergent_barrier(int *out) {
	if (threadIdx.x < 16) {
		__syncthreads();
	} else {
		__syncthreads();
	}
	out[threadIdx.x] = 1;
}
// One mma_bf16 of a (16×16, row-major) and b (16×8, stored as its 8 columns of 16) into d
// (16×8, row-major), each lane loading and storing its fragments as PTX's layout says.
extern "C" __global__ void emu_mma(float *d, const uint16_t *a, const uint16_t *b) {
	int lane = threadIdx.x & 31, g = lane / 4, t = lane % 4;
	auto pair = [](const uint16_t *p) { return (unsigned)p[0] | (unsigned)p[1] << 16; };
	unsigned af[4], bf[2];
	for (int i = 0; i < 4; i++) {
		af[i] = pair(a + (g + 8 * (i % 2)) * 16 + 2 * t + 8 * (i / 2)); // rows g, g+8, g, g+8; columns 2t, 2t, 2t+8, 2t+8
	}
	for (int i = 0; i < 2; i++) {
		bf[i] = pair(b + g * 16 + 2 * t + 8 * i); // column g, rows 2t and 2t+8
	}
	float df[4] = {1, 2, 3, 4};
	mma_bf16(df, af, bf);
	for (int i = 0; i < 4; i++) {
		d[(g + 8 * (i / 2)) * 8 + 2 * t + i % 2] = df[i] - (float)(i + 1);
	}
}
// Where the launch ran its blocks: out[0] counts them, out[1 + k] is the k-th block's linear
// index (x fastest), for the test of BlockOrder.
extern "C" __global__ void emu_block_order(int *out) {
	if (threadIdx.x == 0) {
		out[1 + atomicAdd(out, 1)] = (int)(blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z));
	}
}
} // namespace k_emu

namespace {

// A kernel argument is the low bytes of its 8-byte cell (emu.go).
template <class T> T arg(const uint64_t *cell) {
	T v;
	memcpy(&v, cell, sizeof(T));
	return v;
}
template <class... A, size_t... I> void call(void (*f)(A...), const uint64_t *args, std::index_sequence<I...>) {
	f(arg<A>(args + I)...);
}
template <class... A> constexpr int arity(void (*)(A...)) { return sizeof...(A); }

struct Kernel {
	const char *file, *name;
	int arity;
	bool barriers; // false: no thread waits at a barrier or shuffles (run_direct)
	void (*body)(const uint64_t *);
};

#define KERNEL_IN(name, file, fn, barriers)                                                                   \
	Kernel {                                                                                                 \
		name, #fn, arity(k_##file::fn), barriers, [](const uint64_t *a) {                                    \
			call(k_##file::fn, a, std::make_index_sequence<arity(k_##file::fn)>());                         \
		}                                                                                                    \
	}
#define KERNEL(file, fn, barriers) KERNEL_IN(#file ".cu", file, fn, barriers)

const Kernel table[] = {
	KERNEL(attention, flash_prefill, true), KERNEL(attention, decode_split_hd16, true),
	KERNEL(attention, decode_split_hd32, true), KERNEL(attention, decode_split_hd64, true),
	KERNEL(attention, decode_split_hd128, true), KERNEL(attention, decode_split_hd256, true),
	KERNEL(elementwise, embedding, false),
	KERNEL(elementwise, gather, false), KERNEL(elementwise, rmsnorm, true),
	KERNEL(elementwise, silu_mul, false), KERNEL(elementwise, add_bias, false),
	KERNEL(elementwise, add, false), KERNEL(elementwise, to_bf16, false),
	KERNEL(elementwise, fill_random, false), KERNEL(gemm, gemm_small_m8, true),
	KERNEL(gemm, gemm_small_m16, true), KERNEL(gemm, gemm_small_m32, true), KERNEL(gemm_lean, gemm_lean_m16, true),
	KERNEL(gemm_lean, gemm_lean_m32, true), KERNEL(gemm, gemm_deep_m8, true),
	KERNEL(gemm, gemm_deep_m16, true), KERNEL(gemm, gemm_deep_m32, true), KERNEL(lora, lora_shrink, true),
	KERNEL(lora, lora_expand, true), KERNEL(rope_kv, rope_write_kv, false),
	KERNEL(sample, argmax, true), KERNEL(sample, sample_rows, true),
	KERNEL_IN("emu.cpp", emu, emu_deadlock, true), KERNEL_IN("emu.cpp", emu, emu_shuffle_ended, true),
	KERNEL_IN("emu.cpp", emu, emu_unmarked_barrier, false), KERNEL_IN("emu.cpp", emu, emu_partial_mask, true),
	KERNEL_IN("emu.cpp", emu, emu_divergent_barrier, true), KERNEL_IN("emu.cpp", emu, emu_mma, true),
	KERNEL_IN("emu.cpp", emu, emu_trap, true), KERNEL_IN("emu.cpp", emu, emu_block_order, false),
};

// launches counts emu_launch's calls, which take turns at the order of their blocks (BlockOrder).
unsigned long long launches;

// A launch's order of its n blocks, by linear index (x fastest). A GPU runs blocks in no set
// order, and code whose result depends on it (which block of a split finishes last and
// combines the parts, say) is wrong; so the launches take turns: first to last, last to first,
// and by a stride of about n/2 (prime to n, so that each block runs once), whose last block is
// one from the middle.
struct BlockOrder {
	unsigned long long n, mode, stride;
	BlockOrder(unsigned long long n, unsigned long long launch) : n(n), mode(launch % 3), stride(n / 2 + 1) {
		while (std::gcd(stride, n) > 1) {
			stride++;
		}
	}
	// The k-th block to run (k < n).
	unsigned long long at(unsigned long long k) const {
		return mode == 0 ? k : mode == 1 ? n - 1 - k : k * stride % n;
	}
};

} // namespace

extern "C" {

int emu_kernels() { return sizeof table / sizeof table[0]; }
const char *emu_kernel_name(int i) { return table[i].name; }
const char *emu_kernel_file(int i) { return table[i].file; }
int emu_kernel_arity(int i) { return table[i].arity; }

// emu_launch runs kernel i over the grid, block threads (a multiple of 32, at most 1024) each,
// with smem bytes of dynamic shared memory, filled with 0xff bytes (NaN as floats) so that
// reading what no thread wrote shows, its blocks in one of BlockOrder's orders. It returns the
// first failure, or null.
const char *emu_launch(int i, unsigned gx, unsigned gy, unsigned gz, unsigned block, size_t smem, const uint64_t *args) {
	if ((int)block > max_threads || block % 32 != 0) {
		return "block size not emulated: a multiple of 32 up to 1024";
	}
	if (blk.fibers.size() < block) {
		blk.fibers.resize(block);
	}
	blk.n = block;
	blk.body = table[i].body;
	blk.args = args;
	blk.err = nullptr;
	blk.direct = !table[i].barriers;
	gridDim = dim3{gx, gy, gz};
	blockDim = dim3{block, 1, 1};
	std::vector<unsigned char> shared(smem + 16);
	const BlockOrder order((unsigned long long)gx * gy * gz, launches++);
	for (unsigned long long k = 0; k < order.n && !blk.err; k++) {
		const unsigned long long b = order.at(k);
		memset(shared.data(), 0xff, shared.size());
		emu_dyn_smem = smem ? (unsigned char *)(((uintptr_t)shared.data() + 15) & ~(uintptr_t)15) : nullptr;
		blockIdx = uint3{(unsigned)(b % gx), (unsigned)(b / gx % gy), (unsigned)(b / gx / gy)};
		if (blk.direct) {
			run_direct();
		} else {
			run_block();
		}
	}
	emu_dyn_smem = nullptr;
	return blk.err;
}

} // extern "C"
