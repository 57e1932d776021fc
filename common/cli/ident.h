/* ident.h: the identifiers clients and processes make up - request ids, write ids, instance ids: what a
 * valid one is (printable ASCII without spaces, bounded), and a random one. */
#ifndef VS_COMMON_CLI_IDENT_H
#define VS_COMMON_CLI_IDENT_H

#include <stddef.h>

/* Characters of vs_ident_random's output, without the terminating NUL. */
#define VS_IDENT_RANDOM_CHARS 32

/* 1 when s is 1..max characters, each printable ASCII other than space (0x21..0x7e). */
int vs_ident_valid(const char *s, size_t max);

/* 32 lowercase hex digits from getrandom (the time and the process id if that fails) into out. */
void vs_ident_random(char out[VS_IDENT_RANDOM_CHARS + 1]);

#endif
