// MSBuild task (compiled by RoslynCodeTaskFactory, see build/TorchSharpNative.targets).
//
// TorchSharp 0.107's libLibTorchSharp.so is linked against GCC 13's libstdc++ and so lists
// the version GLIBCXX_3.4.32 among its needs. The only symbol it binds to that version is
// std::ios_base_library_init, which it references but never calls. On hosts whose libstdc++
// predates GCC 13 (Debian 12 ships 3.4.30) the dynamic loader refuses the library outright.
// Setting VER_FLG_WEAK on that one version-need entry (ELF section .gnu.version_r) tells the
// loader that a missing GLIBCXX_3.4.32 is not fatal; everything else is untouched.
//
// The task is idempotent (a weak entry is left as it is), never runs where the host's
// libstdc++ already provides the version, and reports what it did in one line.
#nullable enable
using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using System.Text;
using Microsoft.Build.Framework;
using Microsoft.Build.Utilities;

public sealed class WeakenGlibcxxNeed : Task
{
    const string Version = "GLIBCXX_3.4.32";
    const uint ShtGnuVerneed = 0x6ffffffe;
    const ushort VerFlgWeak = 0x2;

    /// <summary>Folders to search (recursively) for libLibTorchSharp.so.</summary>
    [Required] public string[] SearchRoots { get; set; } = Array.Empty<string>();

    /// <summary>Project name, for the report line.</summary>
    public string ProjectName { get; set; } = "";

    public override bool Execute()
    {
        if (!RuntimeInformation.IsOSPlatform(OSPlatform.Linux)) return true;
        var files = SearchRoots
            .Where(Directory.Exists)
            .SelectMany(r => Directory.EnumerateFiles(r, "libLibTorchSharp.so", SearchOption.AllDirectories))
            .Distinct()
            .ToList();
        if (files.Count == 0) return true;

        var hostLib = HostLibStdCxx();
        if (hostLib is null)
        {
            Report($"no libstdc++.so.6 found on this host; left {files.Count} libLibTorchSharp.so unchanged");
            return true;
        }
        if (FileContains(hostLib, Encoding.ASCII.GetBytes(Version + "\0")))
        {
            Report($"host {hostLib} provides {Version}; no patch needed");
            return true;
        }

        int patched = 0, already = 0, notNeeded = 0;
        foreach (var f in files)
        {
            switch (Weaken(f))
            {
                case Outcome.Patched: patched++; break;
                case Outcome.AlreadyWeak: already++; break;
                case Outcome.NotNeeded: notNeeded++; break;
            }
        }
        Report($"host libstdc++ lacks {Version}: marked it weak in {patched} libLibTorchSharp.so, "
             + $"{already} already weak, {notNeeded} without that need");
        return !Log.HasLoggedErrors;
    }

    void Report(string what) =>
        Log.LogMessage(MessageImportance.High, $"Lookahead native fix ({ProjectName}): {what}.");

    static string? HostLibStdCxx()
    {
        string[] candidates =
        {
            "/usr/lib/x86_64-linux-gnu/libstdc++.so.6", "/lib/x86_64-linux-gnu/libstdc++.so.6",
            "/usr/lib/aarch64-linux-gnu/libstdc++.so.6", "/lib/aarch64-linux-gnu/libstdc++.so.6",
            "/usr/lib64/libstdc++.so.6", "/lib64/libstdc++.so.6", "/usr/lib/libstdc++.so.6",
        };
        return candidates.FirstOrDefault(File.Exists);
    }

    static bool FileContains(string path, byte[] needle)
    {
        var hay = File.ReadAllBytes(path);
        for (int i = 0; i + needle.Length <= hay.Length; i++)
        {
            int k = 0;
            while (k < needle.Length && hay[i + k] == needle[k]) k++;
            if (k == needle.Length) return true;
        }
        return false;
    }

    enum Outcome { Patched, AlreadyWeak, NotNeeded }

    Outcome Weaken(string path)
    {
        var b = File.ReadAllBytes(path);
        if (b.Length < 64 || b[0] != 0x7f || b[1] != (byte)'E' || b[2] != (byte)'L' || b[3] != (byte)'F'
            || b[4] != 2 /* ELFCLASS64 */ || b[5] != 1 /* little endian */)
        {
            Log.LogWarning($"Lookahead native fix: {path} is not a little-endian ELF64 file; left unchanged");
            return Outcome.NotNeeded;
        }
        ulong shoff = BitConverter.ToUInt64(b, 0x28);
        int shentsize = BitConverter.ToUInt16(b, 0x3A);
        int shnum = BitConverter.ToUInt16(b, 0x3C);
        var sections = Enumerable.Range(0, shnum).Select(i => (long)shoff + (long)i * shentsize).ToList();
        foreach (var sh in sections)
        {
            if (BitConverter.ToUInt32(b, (int)sh + 4) != ShtGnuVerneed) continue;
            long offset = (long)BitConverter.ToUInt64(b, (int)sh + 24);
            int link = (int)BitConverter.ToUInt32(b, (int)sh + 40);
            int count = (int)BitConverter.ToUInt32(b, (int)sh + 44);
            long strtab = (long)BitConverter.ToUInt64(b, (int)sections[link] + 24);

            long vn = offset;
            for (int i = 0; i < count; i++)
            {
                int auxCount = BitConverter.ToUInt16(b, (int)vn + 2);
                long aux = vn + BitConverter.ToUInt32(b, (int)vn + 8);
                for (int j = 0; j < auxCount; j++)
                {
                    long name = strtab + BitConverter.ToUInt32(b, (int)aux + 8);
                    if (CString(b, name) == Version)
                    {
                        ushort flags = BitConverter.ToUInt16(b, (int)aux + 4);
                        if ((flags & VerFlgWeak) != 0) return Outcome.AlreadyWeak;
                        // Two bytes written in place: permissions and the rest of the file are kept.
                        using (var fs = new FileStream(path, FileMode.Open, FileAccess.Write))
                        {
                            fs.Seek(aux + 4, SeekOrigin.Begin);
                            var bytes = BitConverter.GetBytes((ushort)(flags | VerFlgWeak));
                            fs.Write(bytes, 0, bytes.Length);
                        }
                        return Outcome.Patched;
                    }
                    aux += BitConverter.ToUInt32(b, (int)aux + 12);
                }
                vn += BitConverter.ToUInt32(b, (int)vn + 12);
            }
        }
        return Outcome.NotNeeded;
    }

    static string CString(byte[] b, long start)
    {
        long end = start;
        while (end < b.Length && b[end] != 0) end++;
        return Encoding.ASCII.GetString(b, (int)start, (int)(end - start));
    }
}
