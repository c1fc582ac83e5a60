#include "yard_build_info.h"

/* Package.swift defines YARD_BUILD_COMMIT and YARD_BUILD_DATE when SWITCHYARD_COMMIT and
   SWITCHYARD_BUILD_DATE are set; these fallbacks serve a plain `swift build`. */
#ifndef YARD_BUILD_COMMIT
#define YARD_BUILD_COMMIT "unknown"
#endif

const char *yard_build_commit(void) { return YARD_BUILD_COMMIT; }

#ifdef YARD_BUILD_DATE
const char *yard_build_date(void) { return YARD_BUILD_DATE; }
#else
/* The time this file was compiled (again whenever the commit given changes), from
   __DATE__ ("Dec  7 2026") and __TIME__ ("03:10:00") rearranged to 2026-12-07T03:10:00. */
static const char *month_number(const char *date) {
    static const char names[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    static const char *numbers[] = {"01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11", "12"};
    for (int i = 0; i < 12; i++) {
        if (date[0] == names[3 * i] && date[1] == names[3 * i + 1] && date[2] == names[3 * i + 2]) return numbers[i];
    }
    return "00";
}

const char *yard_build_date(void) {
    static char iso[20];
    const char *date = __DATE__, *time = __TIME__, *month = month_number(date);
    const char parts[19] = {
        date[7], date[8], date[9], date[10], '-', month[0], month[1], '-',
        date[4] == ' ' ? '0' : date[4], date[5], 'T',
        time[0], time[1], ':', time[3], time[4], ':', time[6], time[7]};
    for (int i = 0; i < 19; i++) iso[i] = parts[i];
    iso[19] = 0;
    return iso;
}
#endif
