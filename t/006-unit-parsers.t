# The parsers, compiled with AddressSanitizer and UndefinedBehaviorSanitizer
# and fed the sample events plus hostile variants (truncations at every
# point, deep nesting, invalid UTF-8, huge strings, binary garbage).  The
# same programs are libFuzzer targets: bench/fuzz.sh runs them.

use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);

my $tree = $ENV{ACS_NGINX_TREE} || 'build/nginx-src';
-f "$tree/objs/ngx_auto_config.h"
    or BAIL_OUT("no configured nginx tree in $tree: run ./build.sh build first");

my $dir = tempdir(CLEANUP => 1);
my @inc = map { "-I$tree/$_" } qw(src/core src/event src/event/modules src/os/unix objs);
my $cc = join ' ', 'cc -g -O1 -fsanitize=address,undefined -fno-sanitize-recover=all',
    '-fno-omit-frame-pointer -Wall -Werror', @inc, '-Ingx_acs_notify_module';

my %prog = (
    event   => 't/unit/event_fuzz.c ngx_acs_notify_module/ngx_acs_event.c '
               . 'ngx_acs_notify_module/ngx_acs_json.c',
    parsers => 't/unit/parsers_fuzz.c ngx_acs_notify_module/ngx_acs_json.c '
               . 'ngx_acs_notify_module/ngx_acs_sas.c',
);

for my $p (sort keys %prog) {
    my $out = `$cc t/unit/ngx_shim.c t/unit/fuzz_main.c $prog{$p} -lyajl -lcrypto -o $dir/$p 2>&1`;
    is($?, 0, "the $p replay program compiles with the sanitizers") or diag $out;
}

# inputs
my @fixtures = glob 't/data/events/*.json';
my $n = 0;
sub input { my $f = "$dir/in" . $n++; open my $fh, '>', $f or die; print $fh $_[0]; close $fh; $f }

my @inputs = @fixtures;
for my $f (@fixtures[0 .. 5]) {
    open my $fh, '<', $f or die;
    my $text = do { local $/; <$fh> };
    for (my $i = 0; $i < length $text; $i += 37) {
        push @inputs, input(substr($text, 0, $i));
    }
    push @inputs, input($text =~ s/"/\xff/r);
    push @inputs, input($text =~ s/\{/[/gr);
}
push @inputs, input('[' x 100000);
push @inputs, input('[{"data":' . ('{"a":' x 5000) . '1' . ('}' x 5000) . '}]');
push @inputs, input('[{"id":"' . ('x' x 2_000_000) . '"}]');
push @inputs, input('[' . join(',', ('{"id":"1"}') x 6000) . ']');
push @inputs, input("[\"\\ud800\"]");
push @inputs, input("\x00\x01\x02garbage\x{ff}");
push @inputs, input('Endpoint=sb://a/;SharedAccessKeyName=;SharedAccessKey==;;;');
push @inputs, input('eyJhbGciOiJub25lIn0');
push @inputs, input('{"keys":[{"kty":"RSA","n":' . ('[' x 3000) . ']}]}');

for my $p (sort keys %prog) {
    my $out = `$dir/$p @inputs 2>&1`;
    is($?, 0, "the $p parsers take " . scalar(@inputs) . " inputs without a sanitizer report")
        or diag substr($out, 0, 3000);
}

done_testing();
