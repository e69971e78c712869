/* The peak of heap bytes in use over one call, counted by tcmalloc's own hooks (gperftools'
 * MallocHook C API): every thread's allocations, each block at its allocated size (size-class
 * rounding included). Loaded with ctypes by harness/allocators.py (Trimmer.allocator_peak);
 * the hooks are found at run time, so this library loads under any allocator and says
 * whether it can count (sc_peak_available).
 *
 * Why: tcmalloc serves small blocks from size-class lists it never hands back to the kernel,
 * so a warm call's RSS does not grow and the RSS method reads nothing (docs/memory.md);
 * jemalloc has its own counter (thread.peak), tcmalloc only these hooks.
 */
#include <dlfcn.h>
#include <stdatomic.h>
#include <stddef.h>

typedef void (*sc_new_hook)(const void *ptr, size_t size);
typedef void (*sc_delete_hook)(const void *ptr);

static int (*add_new)(sc_new_hook);
static int (*remove_new)(sc_new_hook);
static int (*add_delete)(sc_delete_hook);
static int (*remove_delete)(sc_delete_hook);
static size_t (*allocated_size)(const void *);

static _Atomic long long in_use;  /* bytes allocated less bytes freed since sc_peak_begin */
static _Atomic long long highest; /* the most in_use has been since sc_peak_begin */

static void on_new(const void *ptr, size_t size) {
    (void)size; /* the allocated size, as on_delete sees it, not the requested one */
    if (ptr == NULL) return;
    long long bytes = (long long)allocated_size(ptr);
    long long now = atomic_fetch_add_explicit(&in_use, bytes, memory_order_relaxed) + bytes;
    long long seen = atomic_load_explicit(&highest, memory_order_relaxed);
    while (now > seen && !atomic_compare_exchange_weak_explicit(
                             &highest, &seen, now, memory_order_relaxed, memory_order_relaxed)) {
    }
}

static void on_delete(const void *ptr) {
    if (ptr == NULL) return;
    atomic_fetch_sub_explicit(&in_use, (long long)allocated_size(ptr), memory_order_relaxed);
}

/* 1 when the process's allocator offers the hooks (tcmalloc preloaded or linked), else 0 */
int sc_peak_available(void) {
    add_new = (int (*)(sc_new_hook))dlsym(RTLD_DEFAULT, "MallocHook_AddNewHook");
    remove_new = (int (*)(sc_new_hook))dlsym(RTLD_DEFAULT, "MallocHook_RemoveNewHook");
    add_delete = (int (*)(sc_delete_hook))dlsym(RTLD_DEFAULT, "MallocHook_AddDeleteHook");
    remove_delete = (int (*)(sc_delete_hook))dlsym(RTLD_DEFAULT, "MallocHook_RemoveDeleteHook");
    allocated_size = (size_t(*)(const void *))dlsym(RTLD_DEFAULT, "MallocExtension_GetAllocatedSize");
    return add_new && remove_new && add_delete && remove_delete && allocated_size;
}

/* Starts counting from zero; 1 when both hooks are in place */
int sc_peak_begin(void) {
    if (!sc_peak_available()) return 0;
    atomic_store(&in_use, 0);
    atomic_store(&highest, 0);
    if (!add_new(on_new)) return 0;
    if (!add_delete(on_delete)) {
        remove_new(on_new);
        return 0;
    }
    return 1;
}

/* Stops counting; the peak since sc_peak_begin, in bytes */
long long sc_peak_end(void) {
    remove_new(on_new);
    remove_delete(on_delete);
    return atomic_load(&highest);
}
