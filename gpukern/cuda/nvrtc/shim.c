// A thin dlopen shim over NVRTC, so that one binary works with whichever CUDA runtime a
// machine has (NVRTC's soname carries its version) and builds without NVRTC at all.
#include <dlfcn.h>
#include <stddef.h>
#include "shim.h"

typedef int (*create_fn)(void **, const char *, const char *, int, const char *const *, const char *const *);
typedef int (*compile_fn)(void *, int, const char *const *);
typedef int (*size_fn)(void *, size_t *);
typedef int (*get_fn)(void *, char *);
typedef int (*destroy_fn)(void **);
typedef const char *(*errstr_fn)(int);
typedef int (*version_fn)(int *, int *);

static void *lib;
static create_fn create_program;
static compile_fn compile_program;
static size_fn log_size, cubin_size;
static get_fn get_log, get_cubin;
static destroy_fn destroy_program;
static errstr_fn error_string;
static version_fn version;

int lf_nvrtc_open(const char *path) {
	if (lib) {
		return 0;
	}
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		return -1;
	}
	create_program = (create_fn)dlsym(h, "nvrtcCreateProgram");
	compile_program = (compile_fn)dlsym(h, "nvrtcCompileProgram");
	log_size = (size_fn)dlsym(h, "nvrtcGetProgramLogSize");
	get_log = (get_fn)dlsym(h, "nvrtcGetProgramLog");
	cubin_size = (size_fn)dlsym(h, "nvrtcGetCUBINSize");
	get_cubin = (get_fn)dlsym(h, "nvrtcGetCUBIN");
	destroy_program = (destroy_fn)dlsym(h, "nvrtcDestroyProgram");
	error_string = (errstr_fn)dlsym(h, "nvrtcGetErrorString");
	version = (version_fn)dlsym(h, "nvrtcVersion");
	if (!create_program || !compile_program || !log_size || !get_log || !cubin_size || !get_cubin ||
	    !destroy_program || !error_string || !version) {
		dlclose(h);
		return -2; // too old: no nvrtcGetCUBIN (CUDA < 11.1)
	}
	lib = h;
	return 0;
}

const char *lf_dlerror(void) { return dlerror(); }

int lf_nvrtc_version(int *major, int *minor) { return version(major, minor); }

const char *lf_nvrtc_error(int code) { return error_string(code); }

int lf_nvrtc_create(void **prog, const char *src, const char *name) {
	return create_program(prog, src, name, 0, NULL, NULL);
}

int lf_nvrtc_compile(void *prog, int n, char **opts) { return compile_program(prog, n, (const char *const *)opts); }

int lf_nvrtc_log_size(void *prog, size_t *n) { return log_size(prog, n); }

int lf_nvrtc_log(void *prog, char *buf) { return get_log(prog, buf); }

int lf_nvrtc_cubin_size(void *prog, size_t *n) { return cubin_size(prog, n); }

int lf_nvrtc_cubin(void *prog, char *buf) { return get_cubin(prog, buf); }

int lf_nvrtc_destroy(void **prog) { return destroy_program(prog); }
