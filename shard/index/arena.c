/* arena.c: see arena.h. */
#include "shard/index/arena.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static pthread_key_t keys[VS_ARENA_SLOTS_];
static pthread_once_t keys_once = PTHREAD_ONCE_INIT;

static void arena_free(void *p)
{
    vs_arena_t *a = p;
    free(a->mem);
    free(a);
}

static void keys_init(void)
{
    for (int s = 0; s < VS_ARENA_SLOTS_; s++)
        pthread_key_create(&keys[s], arena_free);
}

vs_arena_t *vs_arena_thread(vs_arena_slot slot, size_t bytes)
{
    pthread_once(&keys_once, keys_init);
    vs_arena_t *a = pthread_getspecific(keys[slot]);
    if (a == NULL) {
        a = calloc(1, sizeof *a);
        if (a == NULL || pthread_setspecific(keys[slot], a) != 0) {
            free(a);
            return NULL;
        }
    }
    if (a->cap < bytes || a->mem == NULL) {
        size_t rounded = (bytes + 63) / 64 * 64;
        void *mem = aligned_alloc(64, rounded ? rounded : 64);
        if (mem == NULL)
            return NULL;
        memset(mem, 0, rounded);
        free(a->mem);
        a->mem = mem;
        a->cap = bytes;
        a->owner = 0;
        a->gen = 0;
    }
    return a;
}
