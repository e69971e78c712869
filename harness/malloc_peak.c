/* The peak of heap bytes a call holds, counted by tcmalloc's own hooks (gperftools' MallocHook
 * C API): every thread's allocations, each block at its allocated size (size-class rounding
 * included). Only blocks allocated while counting are counted, and their frees: a block the
 * process held before the call and freed during it does not lower the count. Loaded with
 * ctypes by harness/allocators.py (Trimmer.allocator_peak); the hooks are found at run time, so
 * this library loads under any allocator and says whether it can count (sc_peak_available).
 *
 * Why: tcmalloc serves small blocks from size-class lists it never hands back to the kernel,
 * so a warm call's RSS does not grow and the RSS method reads nothing (docs/memory.md);
 * jemalloc has its own counter (thread.peak), tcmalloc only these hooks.
 */
#include <dlfcn.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef void (*sc_new_hook)(const void *ptr, size_t size);
typedef void (*sc_delete_hook)(const void *ptr);

static int (*add_new)(sc_new_hook);
static int (*remove_new)(sc_new_hook);
static int (*add_delete)(sc_delete_hook);
static int (*remove_delete)(sc_delete_hook);
static size_t (*allocated_size)(const void *);

/* The blocks allocated while counting: an open-addressing set of addresses (0: a slot never
 * used, which ends a search; 1: a slot whose block was freed, which does not), filled and
 * emptied with atomic compare-and-swap from any thread */
#define SLOTS (1u << 20)
#define PROBES 256
static _Atomic uintptr_t blocks[SLOTS];
static _Atomic long long in_use;  /* bytes in blocks allocated since sc_peak_begin, still held */
static _Atomic long long highest; /* the most in_use has been since sc_peak_begin */
static _Atomic int overflow;      /* a block found no slot: the count is incomplete */

static size_t slot_of(uintptr_t p) { return (size_t)((p >> 4) * 0x9E3779B97F4A7C15ull >> 44); }

static void on_new(const void *ptr, size_t size) {
    (void)size; /* the allocated size, as on_delete sees it, not the requested one */
    if (ptr == NULL) return;
    uintptr_t p = (uintptr_t)ptr;
    size_t at = slot_of(p);
    for (int i = 0; i < PROBES; i++, at = (at + 1) & (SLOTS - 1)) {
        /* an empty slot, or one whose block was freed: an address the allocator hands out
         * again and again in one call (a loop's temporaries) reuses its own freed slots */
        uintptr_t seen = atomic_load(&blocks[at]);
        if (seen > 1) continue;
        if (atomic_compare_exchange_strong(&blocks[at], &seen, p)) {
            long long bytes = (long long)allocated_size(ptr);
            long long now = atomic_fetch_add(&in_use, bytes) + bytes;
            long long top = atomic_load(&highest);
            while (now > top && !atomic_compare_exchange_weak(&highest, &top, now)) {
            }
            return;
        }
    }
    atomic_store(&overflow, 1);
}

static void on_delete(const void *ptr) {
    if (ptr == NULL) return;
    uintptr_t p = (uintptr_t)ptr;
    size_t at = slot_of(p);
    for (int i = 0; i < PROBES; i++, at = (at + 1) & (SLOTS - 1)) {
        uintptr_t seen = atomic_load(&blocks[at]);
        if (seen == 0) return; /* not allocated while counting */
        if (seen == p && atomic_compare_exchange_strong(&blocks[at], &seen, (uintptr_t)1)) {
            atomic_fetch_sub(&in_use, (long long)allocated_size(ptr));
            return;
        }
    }
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
    memset((void *)blocks, 0, sizeof(blocks));
    atomic_store(&in_use, 0);
    atomic_store(&highest, 0);
    atomic_store(&overflow, 0);
    if (!add_new(on_new)) return 0;
    if (!add_delete(on_delete)) {
        remove_new(on_new);
        return 0;
    }
    return 1;
}

/* Stops counting; the peak since sc_peak_begin in bytes, or -1 when more blocks were
 * allocated than the set holds (the count would be short) */
long long sc_peak_end(void) {
    remove_new(on_new);
    remove_delete(on_delete);
    return atomic_load(&overflow) ? -1 : atomic_load(&highest);
}
