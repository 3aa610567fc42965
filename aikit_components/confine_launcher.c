/* aikit-confine: run a program under a Landlock file-system ruleset (see confinement.py).
 *
 *   aikit-confine [-r PATH]... [-w PATH]... -- PROGRAM [ARG]...
 *
 * -r grants reading and executing beneath PATH, -w every file-system right beneath PATH. Any
 * other access to the file system is denied to PROGRAM and everything it starts. With Landlock
 * ABI 6 or later the program also cannot signal processes outside its domain (aikit itself) or
 * connect to abstract Unix sockets created outside it. PATHs that do not exist are skipped.
 *
 * Exit status when PROGRAM does not start: 125 (the ruleset could not be applied), 126 (PROGRAM
 * found but not executable), 127 (PROGRAM not found); a message goes to stderr. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_landlock_create_ruleset
#define SYS_landlock_create_ruleset 444
#define SYS_landlock_add_rule 445
#define SYS_landlock_restrict_self 446
#endif

#define CREATE_RULESET_VERSION (1U << 0)
#define RULE_PATH_BENEATH 1
#define FS_EXECUTE (1ULL << 0)
#define FS_WRITE_FILE (1ULL << 1)
#define FS_READ_FILE (1ULL << 2)
#define FS_READ_DIR (1ULL << 3)
#define FS_TRUNCATE (1ULL << 14)
#define FS_IOCTL_DEV (1ULL << 15)
#define SCOPE_ABSTRACT_UNIX_SOCKET (1ULL << 0)
#define SCOPE_SIGNAL (1ULL << 1)

struct ruleset_attr {
    uint64_t handled_access_fs;
    uint64_t handled_access_net;
    uint64_t scoped;
};

struct path_beneath_attr {
    uint64_t allowed_access;
    int32_t parent_fd;
} __attribute__((packed));

/* The file-system rights each ABI version knows (1: 13 rights; 2: refer; 3: truncate; 5: ioctl_dev). */
static uint64_t fs_rights(int abi) {
    uint64_t rights = (1ULL << 13) - 1;
    if (abi >= 2) rights |= 1ULL << 13;
    if (abi >= 3) rights |= FS_TRUNCATE;
    if (abi >= 5) rights |= FS_IOCTL_DEV;
    return rights;
}

static int fail(const char *what) {
    fprintf(stderr, "aikit-confine: %s: %s\n", what, strerror(errno));
    return 125;
}

static int add_path(int ruleset, const char *path, uint64_t access) {
    int fd = open(path, O_PATH | O_CLOEXEC);
    if (fd < 0) return 0; /* a path that does not exist grants nothing */
    struct stat st;
    if (fstat(fd, &st) == 0 && !S_ISDIR(st.st_mode)) /* rights that only apply to files */
        access &= FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV;
    struct path_beneath_attr rule = {.allowed_access = access, .parent_fd = fd};
    long rc = syscall(SYS_landlock_add_rule, ruleset, RULE_PATH_BENEATH, &rule, 0);
    int saved = errno;
    close(fd);
    errno = saved;
    return rc == 0 ? 0 : -1;
}

int main(int argc, char **argv) {
    long abi = syscall(SYS_landlock_create_ruleset, NULL, 0, CREATE_RULESET_VERSION);
    if (abi < 1) return fail("Landlock is not available");
    uint64_t all = fs_rights((int)abi);
    struct ruleset_attr attr = {.handled_access_fs = all};
    size_t size = sizeof(uint64_t);
    if (abi >= 6) {
        attr.scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL;
        size = sizeof(attr);
    }
    int ruleset = (int)syscall(SYS_landlock_create_ruleset, &attr, size, 0);
    if (ruleset < 0) return fail("cannot create the ruleset");

    int i = 1;
    for (; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) { i++; break; }
        if (i + 1 >= argc) { fprintf(stderr, "aikit-confine: %s needs a path\n", argv[i]); return 125; }
        uint64_t access;
        if (strcmp(argv[i], "-r") == 0) access = FS_EXECUTE | FS_READ_FILE | FS_READ_DIR;
        else if (strcmp(argv[i], "-w") == 0) access = all;
        else { fprintf(stderr, "aikit-confine: unknown option %s\n", argv[i]); return 125; }
        if (add_path(ruleset, argv[i + 1], access) != 0) return fail(argv[i + 1]);
        i++;
    }
    if (i >= argc) { fprintf(stderr, "aikit-confine: no program given after --\n"); return 125; }
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return fail("cannot set no_new_privs");
    if (syscall(SYS_landlock_restrict_self, ruleset, 0) != 0) return fail("cannot apply the ruleset");
    close(ruleset);
    execvp(argv[i], &argv[i]);
    int code = errno == ENOENT ? 127 : 126;
    fprintf(stderr, "aikit-confine: cannot run %s: %s\n", argv[i], strerror(errno));
    return code;
}
