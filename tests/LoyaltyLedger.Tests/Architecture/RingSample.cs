// Two namespaces that use each other: the sample LayeringTests checks its ring check against.
namespace LoyaltyLedger.Tests.Architecture.RingSample.Left
{
    /// <summary>Half of the ring the ring check must see.</summary>
    internal static class Uses
    {
        public static int Right() => Architecture.RingSample.Right.Uses.Left() + 1;
        public static int Value() => 1;
    }
}

namespace LoyaltyLedger.Tests.Architecture.RingSample.Right
{
    /// <summary>The other half: it uses the left namespace back.</summary>
    internal static class Uses
    {
        public static int Left() => Architecture.RingSample.Left.Uses.Value();
    }
}
