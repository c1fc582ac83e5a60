#ifndef YARD_BUILD_INFO_H
#define YARD_BUILD_INFO_H
/* What this binary was built from (BuildInfo.swift). The values are compiled into
   build_info.c from defines Package.swift sets; they are C because Swift's -D flags carry
   no values. */

/* The git commit, "-dirty" appended when the tree had uncommitted changes; "unknown". */
const char *yard_build_commit(void);
/* When the binary was built, ISO 8601 (UTC when SWITCHYARD_BUILD_DATE set it). */
const char *yard_build_date(void);

#endif
