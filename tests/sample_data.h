/* SPDX-License-Identifier: MIT */
/*
 * sample_data.h — finding the sample food photos fetched by
 * scripts/fetch-sample-data (data/food/<group name>/<code>.jpeg) in tests.
 */
#ifndef IMS_TESTS_SAMPLE_DATA_H
#define IMS_TESTS_SAMPLE_DATA_H

#include <dirent.h>
#include <stdio.h>
#include <unistd.h>

/* Find <food>/<group>/<code>.jpeg into path; 1 if found. */
static inline int sample_find_photo(const char *food, const char *code, char *path, size_t n)
{
    DIR *d = opendir(food);
    struct dirent *e;
    int found = 0;
    while (d && !found && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, n, "%s/%s/%s.jpeg", food, e->d_name, code);
        found = access(path, R_OK) == 0;
    }
    if (d)
        closedir(d);
    return found;
}

#endif /* IMS_TESTS_SAMPLE_DATA_H */
