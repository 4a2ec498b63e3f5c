# The parsers and renderers, compiled with AddressSanitizer and
# UndefinedBehaviorSanitizer and fed the sample events plus hostile variants
# (truncations at every point, deep nesting, invalid UTF-8, huge strings,
# binary garbage, odd paths, signed requests, templates).  Every program
# takes every input.  The same programs are libFuzzer targets: bench/fuzz.sh
# runs them.

use strict;
use warnings;

use lib 't/lib';
use Test::More;
use File::Temp qw(tempdir);
use MIME::Base64 ();
use AcsTest::Tree;

# the configured tree the module was built against (AcsTest::Tree)
my $tree = AcsTest::Tree::find()
    or BAIL_OUT('no configured nginx tree: run ./build.sh build first');
diag("nginx $tree->{version} tree $tree->{path} ($tree->{from})");

my $dir = tempdir(CLEANUP => 1);
my $cc = join ' ', 'cc -g -O1 -fsanitize=address,undefined -fno-sanitize-recover=all',
    '-fno-omit-frame-pointer -Wall -Werror', $tree->{cflags}, '-Ingx_acs_notify_module';

my $m = 'ngx_acs_notify_module';
my %prog = (
    event   => "t/unit/event_fuzz.c $m/ngx_acs_event.c $m/ngx_acs_time.c "
               . "$m/ngx_acs_json.c",
    parsers => "t/unit/parsers_fuzz.c $m/ngx_acs_json.c $m/ngx_acs_sas.c",
    regpath => "t/unit/regpath_fuzz.c $m/ngx_acs_regpath.c",
    hmac    => "t/unit/hmac_fuzz.c $m/ngx_acs_hmac.c $m/ngx_acs_crypto.c",
    render  => "t/unit/render_fuzz.c $m/ngx_acs_route.c $m/ngx_acs_render.c "
               . "$m/ngx_acs_template.c $m/ngx_acs_shape.c $m/ngx_acs_platform.c "
               . "$m/ngx_acs_event.c $m/ngx_acs_json.c $m/ngx_acs_crypto.c",
);

for my $p (sort keys %prog) {
    my $out = `$cc t/unit/ngx_shim.c t/unit/fuzz_main.c $prog{$p} -lyajl -lcrypto -o $dir/$p 2>&1`;
    is($?, 0, "the $p replay program compiles with the sanitizers (nginx $tree->{version} tree)") or diag $out;
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
# valid JSON nesting 400,000 levels (a tree of it once overflowed the stack
# when freed), in a key set, base64url-encoded, and as a call's context
push @inputs, input('[' x 400_000 . ']' x 400_000);
push @inputs, input('{"keys":[' . '[' x 400_000 . ']' x 400_000 . ']}');
push @inputs, input(MIME::Base64::encode_base64url('{"cc":"x","z":' . '[' x 300_000 . ']' x 300_000 . '}'));
push @inputs, input('[' . join(',', ('{}') x 300_000) . ']');
{
    open my $fh, '<', 't/data/events/eg-incoming-call.json' or die;
    my $call = do { local $/; <$fh> };
    my $icc = 'eyJhbGciOiJub25lIn0.' . MIME::Base64::encode_base64url(
        '{"cc":"x","z":' . '[' x 300_000 . ']' x 300_000 . '}') . '.';
    $call =~ s/"incomingCallContext": "[^"]*"/"incomingCallContext": "$icc"/ or die;
    push @inputs, input($call);
    push @inputs, input($call . "\0\4\2" . '{"message":{"data":{"a":"${cp}"}}}');
}
# registration paths, signed requests, templates after a NUL
push @inputs, input('users/8%3Aacs%3Ares_user-1/devices/phone-1');
push @inputs, input('users/4%3A%2B14255550123');
push @inputs, input('users/%2F%00%ZZ%4/devices/x/y');
push @inputs, input('users/' . ('%41' x 300) . '/devices/' . ('d' x 70));
push @inputs, input("PUT\n/acs/users/u/devices/d\nThu, 04 Dec 2025 10:00:00 GMT\nlocalhost\n"
                    . "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"
                    . 'HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature=AAAA');
for my $f (@fixtures[0 .. 3]) {
    open my $fh, '<', $f or die;
    my $text = do { local $/; <$fh> };
    push @inputs, input($text . "\0\0\0" . '{"aps":{"alert":"${data.messageBody}${body}"}}');
    push @inputs, input($text . "\0\4\2" . '{"message":{"data":{"a":"${cp}"}}}');
    push @inputs, input($text . "\0\0\3" . '<toast>${title}</toast>');
    push @inputs, input($text . "\0\0\0" . '{"aps":' . ('[' x 200));
}

for my $p (sort keys %prog) {
    my $out = `$dir/$p @inputs 2>&1`;
    is($?, 0, "the $p parsers take " . scalar(@inputs) . " inputs without a sanitizer report")
        or diag substr($out, 0, 3000);
}

done_testing();
