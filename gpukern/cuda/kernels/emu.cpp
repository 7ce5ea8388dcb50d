//go:build cudaemu

// The CPU emulator's scheduler and table of kernels (emu.go). A block's threads are fibers
// run round-robin, each until it waits at a barrier (__syncthreads, or a warp's shuffle) or
// ends, thread by thread or, on some launches, warp by warp (a warp's threads until none of
// them can run); a barrier opens once every thread of its block or warp that has not ended is
// there.
// A barrier that can never open (threads ended or waiting elsewhere) is reported as a
// deadlock rather than hanging, as a shuffle reading a lane that has ended is reported.
// Kernels that the table marks barrier-free run their threads one after another as plain
// calls, which is much faster; one that reaches a barrier all the same is reported.
// Blocks run one at a time, but for one wait: the first block of a launch to reach an atomic
// waits after it while the launch's other blocks run to their end (emu_atomic, run_others).
#include "emu.h"

#include <algorithm>
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

// The launch being run: what all of its blocks share.
struct {
	int n; // threads a block
	void (*body)(const uint64_t *);
	const uint64_t *args;
	const char *err; // the first failure
	bool direct;     // threads run as plain calls: a barrier is an error
	// The order the threads take turns in (Order): until they end or wait at a barrier, each
	// in turn, then again; or, by_warp, warp by warp in the order of their first threads.
	int order[max_threads];
	bool by_warp;
} launch;

// A block being run: its threads and where they wait.
struct Block {
	std::vector<Fiber> fibers; // grows to the largest block; stacks are kept
	int cur;
	Barrier all, warps[max_threads / 32];
	uint64_t slot[max_threads]; // each thread's value in a shuffle
	struct {
		unsigned a[4], b[2];
	} mma[max_threads]; // each thread's fragments in an mma_bf16
	Context sched;
	Stack sched_stack;
	// may_pause: the block's first atomic (emu_atomic) hands the launch's other blocks their
	// turn, to their end, and paused says that it has.
	bool may_pause, paused;
};
// The launch's first block to reach an atomic waits in blocks[0] while the others run in
// blocks[1] (emu_atomic, run_others); blk is the one running.
Block blocks[2];
Block *blk = &blocks[0];

void fail(const char *msg) {
	if (!launch.err) {
		launch.err = msg;
	}
}

void release(Barrier &b) {
	b.arrived = 0;
	for (int i = 0; i < launch.n; i++) {
		if (blk->fibers[i].waiting == &b) {
			blk->fibers[i].waiting = nullptr;
		}
	}
}

void arrive(Barrier &b) {
	if (++b.arrived == b.expected) {
		release(b);
		return;
	}
	Fiber &f = blk->fibers[blk->cur];
	f.waiting = &b;
	switch_to(f.ctx, blk->sched, blk->sched_stack);
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
	int t = blk->cur;
	Fiber &f = blk->fibers[t];
	f.done = true;
	leave(blk->all);
	leave(blk->warps[t >> 5]);
	switch_to(f.ctx, blk->sched, blk->sched_stack, true); // for good: the next block starts the fiber afresh
	abort();
}

void entry() {
	started(&blk->sched_stack);
	launch.body(launch.args);
	end_thread();
}

void run_direct() {
	for (int k = 0; k < launch.n && !launch.err; k++) {
		const int i = launch.order[k];
		blk->cur = i;
		threadIdx = uint3{(unsigned)i, 0, 0};
		launch.body(launch.args);
	}
}

// run_turn runs thread i until it waits at a barrier or ends, if it can run (it has not ended
// and waits at no barrier), and says whether it ran.
bool run_turn(int i) {
	Fiber &f = blk->fibers[i];
	if (f.done || f.waiting) {
		return false;
	}
	blk->cur = i;
	threadIdx = uint3{(unsigned)i, 0, 0};
	switch_to(blk->sched, f.ctx, Stack{f.stack, stack_bytes});
	return true;
}

// run_round gives every thread that can run a turn, in launch.order, and says whether any
// ran. Warp by warp (launch.by_warp: launch.order holds each warp's threads together), a
// warp's threads take turns until none of them can run before the next warp's do: the warp
// runs ahead through its shuffles, as far as the block's next __syncthreads.
bool run_round() {
	bool ran = false;
	const int group = launch.by_warp ? 32 : 1;
	for (int g = 0; g < launch.n; g += group) {
		bool again;
		do {
			again = false;
			for (int k = g; k < g + group; k++) {
				again = run_turn(launch.order[k]) || again;
				if (blk->paused) {
					return true; // the launch's other blocks first (emu_atomic)
				}
			}
			ran = ran || again;
		} while (again && launch.by_warp);
	}
	return ran;
}

// start_block starts the block's threads afresh, at the kernel's first line, and says whether
// it could.
bool start_block() {
	int n = launch.n;
	for (int i = 0; i < n; i++) {
		Fiber &f = blk->fibers[i];
		if (!f.stack) {
			f.stack = (char *)malloc(stack_bytes);
			if (!f.stack) {
				fail("out of memory for thread stacks");
				return false;
			}
		}
		start(f.ctx, f.stack, stack_bytes, entry);
		f.waiting = nullptr;
		f.done = false;
	}
	blk->all = Barrier{0, n, nullptr};
	for (int w = 0; w * 32 < n; w++) {
		blk->warps[w] = Barrier{0, min(32, n - w * 32), nullptr};
	}
	return true;
}

// run_block runs the started block's threads until they have all ended, the launch has
// failed, or the block waits after its first atomic (blk->paused).
void run_block() {
	const int n = launch.n;
	for (;;) {
		const bool ran = run_round();
		if (blk->paused) {
			return;
		}
		bool all_done = true;
		for (int i = 0; i < n && all_done; i++) {
			all_done = blk->fibers[i].done;
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
	if (launch.direct) {
		fail(not_barrier_free);
		return;
	}
	Barrier &b = blk->all;
	if (b.arrived == 0) {
		b.site = site;
	} else if (strcmp(b.site, site) != 0) {
		fail("threads of a block wait at different __syncthreads (in code that diverges)");
	}
	arrive(b);
}

void emu_atomic() {
	if (launch.direct || !blk->may_pause) {
		return;
	}
	blk->may_pause = false;
	blk->paused = true;
	switch_to(blk->fibers[blk->cur].ctx, blk->sched, blk->sched_stack); // back once the others have run
}

uint64_t emu_shfl(uint64_t v, int src) {
	if (launch.direct) {
		fail(not_barrier_free);
		return v;
	}
	int t = threadIdx.x, s = (t & ~31) + src; // threadIdx changes while this fiber waits
	blk->slot[t] = v;
	arrive(blk->warps[t >> 5]);
	uint64_t r = v;
	if (s >= launch.n || blk->fibers[s].done) {
		fail("a shuffle reads a lane that has ended");
	} else {
		r = blk->slot[s];
	}
	arrive(blk->warps[t >> 5]); // no lane writes its slot again before every lane has read
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
	unsigned w = blk->mma[l].a[reg];
	return col & 1 ? bf16_word_hi(w) : bf16_word_lo(w);
}
float mma_b(int lane0, int row, int col) {
	int l = lane0 + col * 4 + (row & 7) / 2;
	unsigned w = blk->mma[l].b[row >= 8];
	return row & 1 ? bf16_word_hi(w) : bf16_word_lo(w);
}
} // namespace

void mma_bf16(float d[4], const unsigned a[4], const unsigned b[2]) {
	if (launch.direct) {
		fail(not_barrier_free);
		return;
	}
	int t = threadIdx.x, lane0 = t & ~31; // threadIdx changes while this fiber waits
	memcpy(blk->mma[t].a, a, sizeof blk->mma[t].a);
	memcpy(blk->mma[t].b, b, sizeof blk->mma[t].b);
	arrive(blk->warps[t >> 5]);
	for (int l = lane0; l < lane0 + 32; l++) {
		if (l >= launch.n || blk->fibers[l].done) {
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
	arrive(blk->warps[t >> 5]); // no lane writes its fragments again before every lane has read
}

// Fails the launch and ends the calling thread.
[[noreturn]] void fail_thread(const char *msg) {
	fail(msg);
	if (launch.direct) {
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
// index (x fastest), for the test of Order.
extern "C" __global__ void emu_block_order(int *out) {
	if (threadIdx.x == 0) {
		out[1 + atomicAdd(out, 1)] = (int)(blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z));
	}
}
// The order block 0's threads ran in (out as emu_block_order's), for the test of Order; this
// one as fibers (for the barrier after), emu_thread_order_direct as plain calls (barrier-free).
extern "C" __global__ void emu_thread_order(int *out) {
	if (blockIdx.x == 0) {
		out[1 + atomicAdd(out, 1)] = (int)threadIdx.x;
	}
	__syncthreads();
}
extern "C" __global__ void emu_thread_order_direct(int *out) {
	if (blockIdx.x == 0) {
		out[1 + atomicAdd(out, 1)] = (int)threadIdx.x;
	}
}
// Each thread of block 0 records itself (out as emu_block_order's) after each of two shuffles
// (of its own index): warp by warp, a warp's threads record twice before another warp's do.
extern "C" __global__ void emu_warp_turns(int *out) {
	for (int i = 0; i < 2; i++) {
		const int me = __shfl_sync(0xffffffffu, (int)threadIdx.x, threadIdx.x & 31);
		if (blockIdx.x == 0) {
			out[1 + atomicAdd(out, 1)] = me;
		}
	}
}
// Two races that a GPU may or may not show, for the test that the emulator shows them in some
// launches. Thread 0 sets s with no barrier before the others read it: out[t] is what thread t
// read (first to last, every thread finds it set).
extern "C" __global__ void emu_racy_broadcast(float *out) {
	__shared__ float s;
	if (threadIdx.x == 0) {
		s = 1.0f;
	}
	out[threadIdx.x] = s;
	__syncthreads();
}
// Each warp reads the next warp's s, shuffles, and then writes its own for the next round with
// no barrier to wait for the other warps' reads: out[r*warps + w] is what warp w read in round r
// (0 in round 0, 1 in round 1 without the race). Thread by thread, every thread reads before
// any gets past its shuffle; a warp running ahead writes before the others read.
extern "C" __global__ void emu_racy_warps(int *out) {
	__shared__ int s[32];
	const int warp = threadIdx.x >> 5, warps = blockDim.x >> 5, lane = threadIdx.x & 31;
	if (lane == 0) {
		s[warp] = 0;
	}
	__syncthreads();
	for (int r = 0; r < 2; r++) {
		const int seen = __shfl_sync(0xffffffffu, s[(warp + 1) % warps], 0);
		if (lane == 0) {
			s[warp] = r + 1;
			out[r * warps + warp] = seen;
		}
		__syncthreads();
	}
}
// Block 0 writes its static shared memory and block b > 0 reads its own, unwritten: out[b] =
// s[0], which a GPU leaves undefined and the emulator fills with 0xff bytes or zeros.
extern "C" __global__ void emu_static_shared(float *out) {
	__shared__ float s[4];
	if (threadIdx.x == 0 && blockIdx.x == 0) {
		s[0] = 1.0f;
	}
	__syncthreads();
	if (threadIdx.x == 0) {
		out[blockIdx.x] = s[0];
	}
}
// Each thread writes its part (1) and thread 0 counts its block done, after a barrier where
// barrier is non-zero and with none (the race) where it is 0; the block to count last adds
// every block's parts into out[1] (gridDim.x * blockDim.x, without the race). out[0] is the
// count, out[2 + blockIdx.x * blockDim.x + threadIdx.x] the parts: the split GEMMs' and split
// attention's combines, in small.
extern "C" __global__ void emu_racy_count(int *out, int barrier) {
	__shared__ int last;
	const int n = gridDim.x * blockDim.x;
	out[2 + blockIdx.x * blockDim.x + threadIdx.x] = 1;
	if (barrier) {
		__syncthreads();
	}
	if (threadIdx.x == 0) {
		last = atomicAdd(out, 1) == (int)gridDim.x - 1;
	}
	__syncthreads();
	if (last && threadIdx.x == 0) {
		int sum = 0;
		for (int i = 0; i < n; i++) {
			sum += out[2 + i];
		}
		out[1] = sum;
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
	KERNEL_IN("emu.cpp", emu, emu_thread_order, true), KERNEL_IN("emu.cpp", emu, emu_thread_order_direct, false),
	KERNEL_IN("emu.cpp", emu, emu_static_shared, true), KERNEL_IN("emu.cpp", emu, emu_warp_turns, true),
	KERNEL_IN("emu.cpp", emu, emu_racy_broadcast, true), KERNEL_IN("emu.cpp", emu, emu_racy_warps, true),
	KERNEL_IN("emu.cpp", emu, emu_racy_count, true),
};

// launches counts emu_launch's calls, which take turns at how they run (emu_launch).
unsigned long long launches;

// An order of n blocks (by linear index, x fastest) or of a block's n threads. A GPU runs
// blocks in no set order, nor a block's warps, and code whose result depends on it is wrong:
// which block of a split finishes last and combines the parts, say, or a thread reading
// shared memory that another writes with no barrier between them (in first-to-last order the
// reader sees the write wherever the writer's index is the lower). So the launches take turns
// at three orders, for their blocks (mode launch % 3) and for their threads (mode launch / 3
// % 3: nine launches in a row meet every pair): first to last, last to first, and by a
// stride of about n/2 (prime to n, so that each runs once), whose last is one from the middle.
struct Order {
	unsigned long long n, mode, stride;
	Order(unsigned long long n, unsigned long long mode) : n(n), mode(mode % 3), stride(n / 2 + 1) {
		while (std::gcd(stride, n) > 1) {
			stride++;
		}
	}
	// The k-th to run (k < n).
	unsigned long long at(unsigned long long k) const {
		return mode == 0 ? k : mode == 1 ? n - 1 - k : k * stride % n;
	}
};

// order_threads sets the order in which a block's n threads take turns (launch.order, Order's
// of that mode) and whether warp by warp (launch.by_warp: each warp's threads then together,
// warps in the order of their first threads).
void order_threads(unsigned n, unsigned long long mode, bool by_warp) {
	const Order threads(n, mode);
	int first[max_threads / 32]; // where each warp's first thread comes in the order
	for (unsigned k = n; k-- > 0;) { // last to first: the earliest place is the one kept
		launch.order[k] = (int)threads.at(k);
		first[launch.order[k] >> 5] = (int)k;
	}
	launch.by_warp = by_warp;
	if (by_warp) {
		std::stable_sort(launch.order, launch.order + n, [&](int a, int b) { return first[a >> 5] < first[b >> 5]; });
	}
}

// The bounds of the section that holds the kernels' static shared memory (emu.h's
// __shared__), which the linker defines.
extern "C" unsigned char __start_emu_shared[], __stop_emu_shared[];

// run_block_at runs block b (its linear index, x fastest) of the launch in blk, its dynamic
// shared memory (shared: the launch's bytes and 16 to align them) filled with 0xff bytes and
// its static shared memory with poison.
void run_block_at(unsigned long long b, std::vector<unsigned char> &shared, int poison) {
	memset(shared.data(), 0xff, shared.size());
	memset(__start_emu_shared, poison, __stop_emu_shared - __start_emu_shared);
	emu_dyn_smem = shared.size() > 16 ? (unsigned char *)(((uintptr_t)shared.data() + 15) & ~(uintptr_t)15) : nullptr;
	blockIdx = uint3{(unsigned)(b % gridDim.x), (unsigned)(b / gridDim.x % gridDim.y), (unsigned)(b / gridDim.x / gridDim.y)};
	if (launch.direct) {
		run_direct();
	} else if (start_block()) {
		run_block();
	}
}

// run_others runs the launch's blocks from the k-th in order on, to their end, while the block
// in blocks[0] waits after its first atomic: blocks[1] runs them, with shared memory of their
// own, and the waiting block finds its shared memory and coordinates as it left them. A GPU
// may hold a block's other threads back that long: where a block counts itself done (the
// split GEMMs' and split attention's combines) before a barrier has seen all of its threads
// write their part, the block that counts last then reads parts not yet written.
void run_others(const Order &order, unsigned long long k, size_t smem, int poison) {
	Block &waiting = blocks[0], &others = blocks[1];
	const std::vector<unsigned char> statics(__start_emu_shared, __stop_emu_shared);
	const uint3 idx = blockIdx;
	unsigned char *const dyn = emu_dyn_smem;
	if (others.fibers.size() < waiting.fibers.size()) {
		others.fibers.resize(waiting.fibers.size());
	}
	others.may_pause = others.paused = false;
	blk = &others;
	std::vector<unsigned char> shared(smem + 16);
	for (; k < order.n && !launch.err; k++) {
		run_block_at(order.at(k), shared, poison);
	}
	blk = &waiting;
	memcpy(__start_emu_shared, statics.data(), statics.size());
	blockIdx = idx;
	emu_dyn_smem = dyn;
}

} // namespace

extern "C" {

int emu_kernels() { return sizeof table / sizeof table[0]; }
const char *emu_kernel_name(int i) { return table[i].name; }
const char *emu_kernel_file(int i) { return table[i].file; }
int emu_kernel_arity(int i) { return table[i].arity; }

// emu_launch runs kernel i over the grid, block threads (a multiple of 32, at most 1024) each,
// with smem bytes of dynamic shared memory. Launches take turns at how (a cycle of 36
// launches): the blocks, and each block's threads, run in one of Order's orders; the threads take
// turns thread by thread or warp by warp, a warp then racing ahead of the others to the next
// __syncthreads, and so reading and writing shared memory that a missing barrier leaves to
// them. Before each block it fills the dynamic shared memory with 0xff bytes (NaN as floats),
// so that reading what no thread wrote shows, and the static shared memory with 0xff bytes or
// zeros: a flag that one thread sets for the others (`last`, the split GEMMs' and
// attention's) must read as neither true nor false before it is set. The first block to
// reach an atomic waits after it while the blocks after it in the order run (run_others). It
// returns the first failure, or null.
const char *emu_launch(int i, unsigned gx, unsigned gy, unsigned gz, unsigned block, size_t smem, const uint64_t *args) {
	if ((int)block > max_threads || block % 32 != 0) {
		return "block size not emulated: a multiple of 32 up to 1024";
	}
	blk = &blocks[0];
	if (blk->fibers.size() < block) {
		blk->fibers.resize(block);
	}
	launch.n = block;
	launch.body = table[i].body;
	launch.args = args;
	launch.err = nullptr;
	launch.direct = !table[i].barriers;
	gridDim = dim3{gx, gy, gz};
	blockDim = dim3{block, 1, 1};
	std::vector<unsigned char> shared(smem + 16);
	const unsigned long long nth = launches++; // which launch this is: its turn in the cycle
	// The cycle: the blocks' order, the threads', the static shared memory's filling,
	// thread or warp turns; any 36 launches in a row meet every combination.
	const Order order((unsigned long long)gx * gy * gz, nth);
	order_threads(block, nth / 3, nth / 18 % 2);
	const int poison = nth / 9 % 2 ? 0 : 0xff;
	for (unsigned long long k = 0; k < order.n && !launch.err; k++) {
		blk->may_pause = k + 1 < order.n; // until one block of the launch has waited
		blk->paused = false;
		run_block_at(order.at(k), shared, poison);
		if (blk->paused) {
			run_others(order, k + 1, smem, poison);
			blk->paused = false;
			run_block(); // the waiting block, to its end
			break;
		}
	}
	emu_dyn_smem = nullptr;
	return launch.err;
}

} // extern "C"
