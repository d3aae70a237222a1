#include "natten_release.h"

#include <stdio.h>

nf_release nf_natten_release(const char *version) {
    int major, minor;
    if (version == NULL || sscanf(version, "%d.%d", &major, &minor) != 2 || major < 0 || minor < 0)
        return NF_RELEASE_UNREADABLE;
    if (major > 0 || minor > NF_NATTEN_NEWEST) return NF_RELEASE_NEWER;
    if (minor < NF_NATTEN_OLDEST) return NF_RELEASE_OLDER;
    return NF_RELEASE_KNOWN;
}

const char *nf_natten_release_line(const char *version, const char *counted, char *buf, size_t size) {
    nf_release r = nf_natten_release(version);
    if (r == NF_RELEASE_KNOWN) return NULL;
    char what[160];
    if (r == NF_RELEASE_UNREADABLE)
        snprintf(what, sizeof what, "NATTEN's version could not be read ('%.40s'); naflops knows 0.%d to 0.%d",
                 version ? version : "", NF_NATTEN_OLDEST, NF_NATTEN_NEWEST);
    else
        snprintf(what, sizeof what, "NATTEN %.40s is %s than the releases naflops knows (0.%d to 0.%d)",
                 version, r == NF_RELEASE_NEWER ? "newer" : "older", NF_NATTEN_OLDEST, NF_NATTEN_NEWEST);
    if (counted == NULL || *counted == '\0')
        snprintf(buf, size, "%s: none of its entry points has a name naflops counts; its ops are not counted",
                 what);
    else
        snprintf(buf, size,
                 "%s: calls of %s are counted by the rules of the releases that have those names; "
                 "any other entry point is not counted",
                 what, counted);
    return buf;
}
