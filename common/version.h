/* version.h: the release of this build, and the formats and protocols it speaks. Printed by every
 * binary's --version and exported as vecshard_build_info{version}. Bump VS_VERSION with CMakeLists.txt's
 * project(VERSION); the compatibility rule for the rest is in docs/protocol.md. */
#ifndef VS_COMMON_VERSION_H
#define VS_COMMON_VERSION_H

#define VS_VERSION "0.2.0"
#define VS_VERSION_DETAIL "protocol vecshard.v1, index file format 1, manifest vecshard-manifest/1"

#endif
