using System;
using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace Lookahead.Kernels;

/// <summary>
/// Autograd off on this thread until disposed, as <c>torch.no_grad()</c>, without the managed object TorchSharp's
/// guard allocates per call: the runner's step sets libtorch's thread-local grad mode through LibTorchSharp's own
/// exports and restores it. A host where those exports cannot be bound uses TorchSharp's guard.
/// </summary>
internal readonly struct GradOff : IDisposable
{
    readonly bool _restore;
    readonly IDisposable? _fallback;

    GradOff(bool restore, IDisposable? fallback) { _restore = restore; _fallback = fallback; }

    static bool _native = true;

    /// <summary>Turns autograd off (if it is on) until <see cref="Dispose"/>.</summary>
    public static GradOff Begin()
    {
        if (_native)
        {
            try
            {
                bool enabled = THSAutograd_isGradEnabled();
                if (enabled) THSAutograd_setGrad(false);
                return new GradOff(enabled, null);
            }
            catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { _native = false; }
        }
        return new GradOff(false, no_grad());
    }

    /// <summary>Restores the grad mode found by <see cref="Begin"/>.</summary>
    public void Dispose()
    {
        if (_fallback is not null) _fallback.Dispose();
        else if (_restore) THSAutograd_setGrad(true);
    }

    [DllImport("LibTorchSharp")]
    [return: MarshalAs(UnmanagedType.U1)]
    static extern bool THSAutograd_isGradEnabled();

    [DllImport("LibTorchSharp")]
    static extern void THSAutograd_setGrad([MarshalAs(UnmanagedType.U1)] bool enabled);
}
