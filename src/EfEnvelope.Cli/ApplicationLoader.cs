using System.Diagnostics;
using System.Reflection;
using System.Runtime.InteropServices;
using System.Runtime.Loader;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Design;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace EfEnvelope.Cli;

/// <summary>Loads the application's built assembly and creates its DbContext the way <c>dotnet ef</c> does.</summary>
/// <remarks>
/// First an <see cref="IDesignTimeDbContextFactory{TContext}"/> in the assembly; else the application's own host: its
/// entry point runs until the host is built (observed through the hosting diagnostic events), then is stopped, and the
/// context comes from the host's services, configured exactly as the application configures it. The application's
/// dependencies resolve from its build output; EfEnvelope and EF Core are this tool's own, so the tool's version must
/// match the application's EfEnvelope version.
/// </remarks>
internal sealed class ApplicationLoader : IAsyncDisposable
{
    private readonly List<IAsyncDisposable> _owned = [];

    public static ApplicationLoader Load(string assemblyPath)
    {
        var path = Path.GetFullPath(assemblyPath);
        if (!File.Exists(path))
        {
            throw new UsageException($"The application assembly '{path}' does not exist: build the application and pass its .dll with --assembly.");
        }

        var resolver = new AssemblyDependencyResolver(path);
        AssemblyLoadContext.Default.Resolving += (context, name) => resolver.ResolveAssemblyToPath(name) is { } found ? context.LoadFromAssemblyPath(found) : null;
        AssemblyLoadContext.Default.ResolvingUnmanagedDll += (_, name) => resolver.ResolveUnmanagedDllToPath(name) is { } found ? NativeLibrary.Load(found) : IntPtr.Zero;
        return new ApplicationLoader(AssemblyLoadContext.Default.LoadFromAssemblyPath(path));
    }

    private ApplicationLoader(Assembly assembly) => Assembly = assembly;

    public Assembly Assembly { get; }

    /// <summary>Creates the context: <paramref name="contextName"/> (class name or full name) picks one when the application has several.</summary>
    public DbContext CreateContext(string? contextName, string[] applicationArguments, TimeSpan hostTimeout)
    {
        var types = LoadableTypes();
        var factories = types
            .Where(t => t is { IsAbstract: false, IsGenericTypeDefinition: false })
            .SelectMany(t => t.GetInterfaces()
                .Where(i => i.IsGenericType && i.GetGenericTypeDefinition() == typeof(IDesignTimeDbContextFactory<>))
                .Select(i => (Factory: t, Context: i.GetGenericArguments()[0])))
            .Where(f => Matches(f.Context, contextName))
            .ToList();
        if (factories.Count > 1)
        {
            throw new UsageException($"Several design-time factories create contexts ({string.Join(", ", factories.Select(f => f.Context.Name))}): choose one with --context.");
        }

        if (factories is [var (factory, contextType)])
        {
            var instance = Activator.CreateInstance(factory)
                ?? throw new UsageException($"Could not create design-time factory '{factory.FullName}'.");
            return (DbContext)factory.GetInterfaceMap(typeof(IDesignTimeDbContextFactory<>).MakeGenericType(contextType)).TargetMethods[0].Invoke(instance, [applicationArguments])!;
        }

        var services = HostServices(applicationArguments, hostTimeout);
        var candidates = types.Where(t => typeof(DbContext).IsAssignableFrom(t) && !t.IsAbstract && Matches(t, contextName)).ToList();
        var scope = services.CreateAsyncScope();
        _owned.Add(scope);
        var registrations = scope.ServiceProvider.GetRequiredService<IServiceProviderIsService>();
        var registered = candidates.Where(t => registrations.IsService(t) || registrations.IsService(typeof(IDbContextFactory<>).MakeGenericType(t))).ToList();
        return registered switch
        {
            [var type] => (DbContext?)scope.ServiceProvider.GetService(type) ?? CreateFromFactory(scope.ServiceProvider, type),
            [] => throw new UsageException(
                $"The application's host registers no DbContext{(contextName is null ? "" : $" named '{contextName}'")}: register it with AddDbContext (or its pooled or factory form), or add an IDesignTimeDbContextFactory."),
            _ => throw new UsageException($"The application registers several contexts ({string.Join(", ", registered.Select(t => t.Name))}): choose one with --context."),
        };
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var owned in _owned)
        {
            await owned.DisposeAsync();
        }
    }

    private DbContext CreateFromFactory(IServiceProvider services, Type contextType)
    {
        var factory = services.GetRequiredService(typeof(IDbContextFactory<>).MakeGenericType(contextType));
        var context = (DbContext)factory.GetType().GetMethod(nameof(IDbContextFactory<>.CreateDbContext), Type.EmptyTypes)!.Invoke(factory, null)!;
        _owned.Add(context);
        return context;
    }

    private static bool Matches(Type contextType, string? name) =>
        name is null || contextType.Name == name || contextType.FullName == name;

    private Type[] LoadableTypes()
    {
        try
        {
            return Assembly.GetTypes();
        }
        catch (ReflectionTypeLoadException ex)
        {
            return [.. ex.Types.OfType<Type>()];
        }
    }

    /// <summary>Runs the application's entry point until its host is built, then stops it there and keeps the host's services.</summary>
    private IServiceProvider HostServices(string[] arguments, TimeSpan timeout)
    {
        var entryPoint = Assembly.EntryPoint
            ?? throw new UsageException($"'{Assembly.GetName().Name}' has no IDesignTimeDbContextFactory and no entry point to build its host from.");
        var built = new TaskCompletionSource<IHost>(TaskCreationOptions.RunContinuationsAsynchronously);
        using var subscription = DiagnosticListener.AllListeners.Subscribe(new Observer<DiagnosticListener>(listener =>
        {
            if (listener.Name == "Microsoft.Extensions.Hosting")
            {
                listener.Subscribe(new Observer<KeyValuePair<string, object?>>(pair =>
                {
                    if (pair.Key == "HostBuilt" && pair.Value is IHost host && built.TrySetResult(host))
                    {
                        // Thrown inside the application's Build(): its Main goes no further (no migrations, no server).
                        throw new HostCapturedException();
                    }
                }));
            }
        }));

        var thread = new Thread(() =>
        {
            try
            {
                entryPoint.Invoke(null, entryPoint.GetParameters().Length == 0 ? null : [arguments]);
                built.TrySetException(new UsageException($"'{Assembly.GetName().Name}' returned from its entry point without building a host: add an IDesignTimeDbContextFactory."));
            }
            catch (Exception ex) when (IsCapture(ex))
            {
                // The host was built and the application stopped on purpose.
            }
            catch (Exception ex)
            {
                built.TrySetException(new UsageException($"'{Assembly.GetName().Name}' failed while building its host: {(ex is TargetInvocationException { InnerException: { } inner } ? inner : ex).Message}"));
            }
        })
        { IsBackground = true, Name = "application entry point" };
        thread.Start();
        if (!built.Task.Wait(timeout))
        {
            throw new UsageException($"'{Assembly.GetName().Name}' did not build its host within {timeout.TotalSeconds:0} s: add an IDesignTimeDbContextFactory.");
        }

        var host = built.Task.GetAwaiter().GetResult();
        _owned.Add(host as IAsyncDisposable ?? new DisposableAdapter(host));
        return host.Services;
    }

    private static bool IsCapture(Exception? ex)
    {
        for (; ex is not null; ex = ex.InnerException)
        {
            if (ex is HostCapturedException)
            {
                return true;
            }
        }

        return false;
    }

    private sealed class HostCapturedException : Exception
    {
        public HostCapturedException()
            : base("efenvelope took the application's host")
        {
        }
    }

    private sealed class Observer<T>(Action<T> next) : IObserver<T>
    {
        public void OnCompleted()
        {
        }

        public void OnError(Exception error)
        {
        }

        public void OnNext(T value) => next(value);
    }

    private sealed class DisposableAdapter(IDisposable disposable) : IAsyncDisposable
    {
        public ValueTask DisposeAsync()
        {
            disposable.Dispose();
            return ValueTask.CompletedTask;
        }
    }
}

/// <summary>A problem with how the tool was called or what it was pointed at (exit code 2).</summary>
internal sealed class UsageException(string message) : Exception(message);
