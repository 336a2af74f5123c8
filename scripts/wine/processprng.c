/* bcryptprimitives.dll for Wine 8, which lacks it: Rust's std (1.78+) calls ProcessPrng from
 * it when a Windows program starts. Fills the buffer from RtlGenRandom (advapi32's
 * SystemFunction036), as the real one fills it from the system's generator. Only for running
 * the Windows test build under Wine (scripts/release-check); never shipped. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length) {
    while (length > 0) {
        ULONG chunk = length > 0x40000000 ? 0x40000000 : (ULONG)length;
        if (!SystemFunction036(data, chunk)) {
            return FALSE;
        }
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}
