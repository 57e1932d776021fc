/* tsan.h: happens-before edges ThreadSanitizer cannot see by itself. Debian's libgrpc is not built with
 * -fsanitize=thread, so a tag handed to gRPC on one thread and returned by a completion queue on another
 * looks unsynchronised to TSan. Release the tag's object before handing it over and acquire it when the
 * queue returns it; both are no-ops in other builds. */
#ifndef VS_COMMON_NET_TSAN_H
#define VS_COMMON_NET_TSAN_H

#if defined(__SANITIZE_THREAD__)
#define VS_TSAN_ON 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define VS_TSAN_ON 1
#endif
#endif

#ifdef VS_TSAN_ON
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
#define VS_TSAN_RELEASE(p) __tsan_release((void *)(p))
#define VS_TSAN_ACQUIRE(p) __tsan_acquire((void *)(p))
#else
#define VS_TSAN_RELEASE(p) ((void)(p))
#define VS_TSAN_ACQUIRE(p) ((void)(p))
#endif

#endif
