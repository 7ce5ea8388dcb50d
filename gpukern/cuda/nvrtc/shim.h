#include <stddef.h>

int lf_nvrtc_open(const char *path);
const char *lf_dlerror(void);
int lf_nvrtc_version(int *major, int *minor);
const char *lf_nvrtc_error(int code);
int lf_nvrtc_create(void **prog, const char *src, const char *name);
int lf_nvrtc_compile(void *prog, int n, char **opts);
int lf_nvrtc_log_size(void *prog, size_t *n);
int lf_nvrtc_log(void *prog, char *buf);
int lf_nvrtc_cubin_size(void *prog, size_t *n);
int lf_nvrtc_cubin(void *prog, char *buf);
int lf_nvrtc_destroy(void **prog);
